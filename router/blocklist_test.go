package router

import (
	"os"
	"testing"
	"testing/synctest"
	"time"

	"github.com/callpop/callpop/callerid"
)

// The block-list file is re-read only once the check interval has passed,
// off the call path (fake clock: testing/synctest).
func TestBlockListReloadInterval(t *testing.T) {
	numbers, err := callerid.New(callerid.DefaultConfig(), testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	path := writeFile(t, "blocked.txt", "+14155550100\n")
	synctest.Test(t, func(t *testing.T) {
		b := newBlockList(testLogger(t), numbers)
		if err := b.configure(path, time.Minute); err != nil {
			t.Fatal(err)
		}
		if !b.contains("+14155550100") {
			t.Fatal("entry not loaded")
		}
		if err := os.WriteFile(path, []byte("+14155550199\n+1900*\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		time.Sleep(59 * time.Second)
		b.contains("+14155550199")
		synctest.Wait()
		if b.contains("+14155550199") {
			t.Fatal("re-read before the interval passed")
		}
		time.Sleep(2 * time.Second)
		b.contains("+14155550199") // starts the re-read in the background
		synctest.Wait()
		if !b.contains("+14155550199") || !b.contains("+19005550000") || b.contains("+14155550100") {
			t.Fatal("new list not in force after the interval")
		}
		// An unchanged file is not parsed again.
		before := b.set.Load()
		time.Sleep(2 * time.Minute)
		b.contains("+1")
		synctest.Wait()
		if b.set.Load() != before {
			t.Fatal("unchanged file re-parsed")
		}
	})
}
