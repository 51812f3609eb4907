package callbacks

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Hours are the windows callbacks may be dialled in: ParseHours of
// callbacks.hours, read in a time zone. No windows = any time.
type Hours struct {
	windows []window
}

// window is one day's opening: minutes from midnight, end exclusive.
type window struct {
	day        time.Weekday
	start, end int
}

var dayNames = map[string]time.Weekday{
	"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday, "wed": time.Wednesday,
	"thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday,
}

var hoursEntry = regexp.MustCompile(`^([a-z]{3}(?:-[a-z]{3})?(?:,[a-z]{3}(?:-[a-z]{3})?)*) +(\d\d):(\d\d)-(\d\d):(\d\d)$`)

// ParseHours reads entries such as "mon-fri 08:00-18:00", "sat 09:00-13:00",
// "mon,wed 10:00-12:00": days (a range or a comma list of days and
// ranges, three-letter English names), a space, start-end in 24-hour time
// (end 24:00 = midnight; a window does not cross midnight: split it). Errors
// start with the entry's index: "[1]: …".
func ParseHours(entries []string) (Hours, error) {
	var h Hours
	var errs []error
	for i, raw := range entries {
		ws, err := parseEntry(strings.ToLower(strings.Join(strings.Fields(raw), " ")))
		if err != nil {
			errs = append(errs, fmt.Errorf("[%d]: %q: %w", i, raw, err))
			continue
		}
		h.windows = append(h.windows, ws...)
	}
	return h, errors.Join(errs...)
}

func parseEntry(s string) ([]window, error) {
	m := hoursEntry.FindStringSubmatch(s)
	if m == nil {
		return nil, errors.New(`must be days and a time range, e.g. "mon-fri 08:00-18:00" or "sat 09:00-13:00"`)
	}
	start, err := minutes(m[2], m[3])
	if err != nil {
		return nil, err
	}
	end, err := minutes(m[4], m[5])
	if err != nil {
		return nil, err
	}
	if end <= start {
		return nil, errors.New("the end must be after the start (a window cannot cross midnight: split it in two)")
	}
	var out []window
	for _, part := range strings.Split(m[1], ",") {
		from, to, isRange := strings.Cut(part, "-")
		d1, ok1 := dayNames[from]
		d2, ok2 := d1, ok1
		if isRange {
			d2, ok2 = dayNames[to]
		}
		if !ok1 || !ok2 {
			return nil, fmt.Errorf("%q: days are mon, tue, wed, thu, fri, sat, sun", part)
		}
		for d := d1; ; d = (d + 1) % 7 { // mon-sun, fri-mon wrap round the week
			out = append(out, window{day: d, start: start, end: end})
			if d == d2 {
				break
			}
		}
	}
	return out, nil
}

func minutes(hh, mm string) (int, error) {
	h, _ := strconv.Atoi(hh)
	m, _ := strconv.Atoi(mm)
	if m > 59 || h > 24 || h == 24 && m != 0 {
		return 0, fmt.Errorf("%s:%s is not a time of day (00:00-24:00)", hh, mm)
	}
	return h*60 + m, nil
}

// Any says there are no windows: any time will do.
func (h Hours) Any() bool { return len(h.windows) == 0 }

// Next returns the earliest moment at or after t within the hours (t
// itself when it is within them or there are none), read in loc. It
// returns t and false when the hours have no window at all in the week
// ahead (cannot happen with a parsed, non-empty list).
func (h Hours) Next(t time.Time, loc *time.Location) (time.Time, bool) {
	if h.Any() {
		return t, true
	}
	lt := t.In(loc)
	var best time.Time
	for i := range 8 {
		y, mo, d := lt.Date()
		day := time.Date(y, mo, d+i, 0, 0, 0, 0, loc)
		for _, w := range h.windows {
			if day.Weekday() != w.day {
				continue
			}
			// time.Date normalises a wall time a DST change skips.
			start := time.Date(day.Year(), day.Month(), day.Day(), 0, w.start, 0, 0, loc)
			end := time.Date(day.Year(), day.Month(), day.Day(), 0, w.end, 0, 0, loc)
			if !end.After(t) {
				continue
			}
			c := start
			if t.After(start) {
				c = t
			}
			if best.IsZero() || c.Before(best) {
				best = c
			}
		}
		if !best.IsZero() {
			return best, true
		}
	}
	return t, false
}
