package eslwire

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestDecode(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"plain", "0201234567", "0201234567"},
		{"space", "Erika%20Mustermann", "Erika Mustermann"},
		{"plus", "%2B14155550123", "+14155550123"},
		{"utf8", "J%C3%BCrgen", "Jürgen"},
		{"bad escape kept", "x%zz", "x%zz"},
		{"truncated escape kept", "100%4", "100%4"},
		{"trailing percent", "100%", "100%"},
		{"literal plus stays", "a+b", "a+b"},
		{"e3-percent (decoding is not exact)", "M%C3%BCller%20%41%42%2050%25%20100%25%20x%25zz", "Müller AB 50% 100% x%zz"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Decode(tt.in); got != tt.want {
				t.Errorf("Decode(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestEncodeMatchesFreeSWITCH(t *testing.T) {
	// values and their plain encoding, as recorded (adapters/esl/testdata/park/e1-junk.txt, e3-percent.txt)
	tests := []struct{ in, want string }{
		{`+49 (0)201/123-45 67#*%x;ext=9 "q" <y>`, `%2B49%20(0)201/123-45%2067%23*%25x%3Bext%3D9%20%22q%22%20%3Cy%3E`},
		{`Jürgen Groß & Söhne: "VIP" 100% <b>`, `J%C3%BCrgen%20Gro%C3%9F%20%26%20S%C3%B6hne%3A%20%22VIP%22%20100%25%20%3Cb%3E`},
		{`M%C3%BCller %41%42 50%25 100% x%zz`, `M%C3%BCller%20%41%42%2050%25%20100%25%20x%25zz`},
	}
	for _, tt := range tests {
		if got := Encode(tt.in); got != tt.want {
			t.Errorf("Encode(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// Every recorded stream splits into frames; plain events parse; the counts
// match the transcripts.
func TestReadRecordedStreams(t *testing.T) {
	tests := []struct {
		file                    string
		frames, events, replies int
	}{
		{"inbound-plain-b-e164.s2c.txt", 14, 9, 3},
		{"outbound-2000-set-vars-then-exit.s2c.txt", 26, 11, 14},
		{"inbound-server-shutdown.s2c.txt", 7, 3, 2},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("testdata", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			r := NewReader(bytes.NewReader(b))
			var frames, events, replies int
			for {
				f, err := r.ReadFrame()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				frames++
				switch f.ContentType() {
				case TypeEventPlain:
					ev, err := ParseEvent(f.Body)
					if err != nil || ev.Name() == "" {
						t.Fatalf("event: %v", err)
					}
					events++
					if ev.Name() == "BACKGROUND_JOB" && len(ev.Body) == 0 {
						t.Error("BACKGROUND_JOB without its inner body")
					}
					if ev.Name() == "CHANNEL_HANGUP_COMPLETE" {
						n := 0
						for _, h := range ev.Headers {
							if h.Name == "Hangup-Cause" {
								n++
							}
						}
						if n != 2 {
							t.Errorf("Hangup-Cause %d times, want 2 (as recorded)", n)
						}
					}
				case TypeReply, TypeAPIResponse:
					replies++
				}
			}
			if frames != tt.frames || events != tt.events || replies != tt.replies {
				t.Errorf("frames/events/replies = %d/%d/%d, want %d/%d/%d", frames, events, replies, tt.frames, tt.events, tt.replies)
			}
		})
	}
}

func TestConnectReply(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "outbound-2000-set-vars-then-exit.s2c.txt"))
	if err != nil {
		t.Fatal(err)
	}
	f, err := NewReader(bytes.NewReader(b)).ReadFrame()
	if err != nil {
		t.Fatal(err)
	}
	if f.ContentType() != TypeReply || f.ReplyText() != "+OK\n" || len(f.Body) != 0 {
		t.Fatalf("connect reply: %q %q body %d", f.ContentType(), f.ReplyText(), len(f.Body))
	}
	if len(f.Headers) < 100 || Decode(f.Headers.Get("Caller-Caller-ID-Name")) != "Erika Mustermann" {
		t.Fatalf("connect reply headers: %d", len(f.Headers))
	}
}

func TestAppendCommandRefusesLineBreaks(t *testing.T) {
	for _, bad := range []string{"a\nb", "a\r", "a\x00"} {
		if _, err := AppendCommand(nil, "api uuid_setvar x y "+bad, nil, nil); !errors.Is(err, ErrUnsafe) {
			t.Errorf("line %q: err = %v", bad, err)
		}
		if _, err := AppendCommand(nil, "sendmsg", []Header{{Name: "execute-app-arg", Value: bad}}, nil); !errors.Is(err, ErrUnsafe) {
			t.Errorf("header %q: err = %v", bad, err)
		}
	}
	got, err := AppendCommand(nil, "sendmsg", []Header{{Name: "call-command", Value: "execute"}}, []byte("a\n\nb"))
	if err != nil {
		t.Fatal(err)
	}
	if want := "sendmsg\ncall-command: execute\nContent-Length: 4\n\na\n\nb"; string(got) != want {
		t.Errorf("got %q", got)
	}
}

func TestLimits(t *testing.T) {
	long := "Content-Type: x\nX: " + strings.Repeat("a", MaxHeaderBytes+10) + "\n\n"
	if _, err := NewReader(strings.NewReader(long)).ReadFrame(); !errors.Is(err, ErrFrame) {
		t.Errorf("long header: err = %v", err)
	}
	if _, err := NewReader(strings.NewReader("Content-Length: -1\n\n")).ReadFrame(); !errors.Is(err, ErrFrame) {
		t.Errorf("negative length: err = %v", err)
	}
	if _, err := NewReader(strings.NewReader("Content-Length: 10\n\nabc")).ReadFrame(); err == nil {
		t.Error("short body: no error")
	}
}

func FuzzReadFrame(f *testing.F) {
	for _, name := range []string{"inbound-plain-b-e164.s2c.txt", "inbound-server-shutdown.s2c.txt"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b[:min(len(b), 4096)])
	}
	f.Add([]byte("Content-Type: auth/request\n\n"))
	f.Add([]byte("Content-Length: 5\nContent-Type: text/event-plain\n\nA: %\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := NewReader(bytes.NewReader(data))
		for i := 0; i < 100; i++ {
			fr, err := r.ReadFrame()
			if err != nil {
				return
			}
			if fr.ContentType() == TypeEventPlain {
				if ev, err := ParseEvent(fr.Body); err == nil {
					for _, h := range ev.Headers {
						_ = Decode(h.Value)
					}
				}
			}
			_ = fr.ReplyText()
		}
	})
}

func BenchmarkReadEvent(b *testing.B) {
	data, err := os.ReadFile(filepath.Join("testdata", "inbound-plain-b-e164.s2c.txt"))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		r := NewReader(bytes.NewReader(data))
		for {
			f, err := r.ReadFrame()
			if err != nil {
				break
			}
			if f.ContentType() == TypeEventPlain {
				ev, _ := ParseEvent(f.Body)
				_ = ev.Get("Caller-Caller-ID-Number")
			}
		}
	}
}

// Lines and bodies longer than the Reader's buffer arrive whole: an outbound
// connect reply can carry a long SIP header among its channel variables.
func TestLongerThanBuffer(t *testing.T) {
	val := strings.Repeat("v", 3*readBuf+7)
	body := strings.Repeat("b", 5*readBuf+3)
	in := "Content-Type: command/reply\nvariable_sip_h_X-Long: " + val + "\nContent-Length: " + strconv.Itoa(len(body)) + "\n\n" + body +
		"Content-Type: text/event-plain\nContent-Length: 2\n\nok"
	r := NewReader(strings.NewReader(in))
	f, err := r.ReadFrame()
	if err != nil {
		t.Fatal(err)
	}
	if got := f.Headers.Get("variable_sip_h_X-Long"); got != val || string(f.Body) != body || f.ContentType() != "command/reply" {
		t.Fatalf("long frame: header %d bytes, body %d bytes, type %q", len(got), len(f.Body), f.ContentType())
	}
	if f, err = r.ReadFrame(); err != nil || string(f.Body) != "ok" {
		t.Fatalf("next frame: %v %q", err, f.Body)
	}
}
