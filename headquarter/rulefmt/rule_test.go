package rulefmt

import (
	"testing"
	"time"
)

func TestScheduleUpcoming(t *testing.T) {
	rules, err := Parse([]byte("rules:\n  - app: /a\n    min: 1\n    max: 9\n    up: { qps: 10 }\n    timezone: Asia/Shanghai\n    schedules:\n      - cron: \"30 11 * * *\"\n        for: 2h\n        min: 4\n"), "r.yaml")
	if err != nil {
		t.Fatal(err)
	}
	sched := rules[0].Schedules[0]
	loc, _ := time.LoadLocation("Asia/Shanghai")
	// 12:00 in Shanghai: today's window is open, tomorrow's and the next follow.
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, loc)
	got := sched.Upcoming(now, 48*time.Hour, 5)
	want := []Window{
		{time.Date(2026, 11, 29, 11, 30, 0, 0, loc), time.Date(2026, 11, 29, 13, 30, 0, 0, loc)},
		{time.Date(2026, 11, 30, 11, 30, 0, 0, loc), time.Date(2026, 11, 30, 13, 30, 0, 0, loc)},
		{time.Date(2026, 12, 1, 11, 30, 0, 0, loc), time.Date(2026, 12, 1, 13, 30, 0, 0, loc)},
	}
	if len(got) != len(want) {
		t.Fatalf("Upcoming = %v, want %v", got, want)
	}
	for i := range want {
		if !got[i].Start.Equal(want[i].Start) || !got[i].End.Equal(want[i].End) {
			t.Errorf("window %d = %v, want %v", i, got[i], want[i])
		}
	}
	// At 14:00 today's window has closed: tomorrow's comes first; max bounds it.
	if got := sched.Upcoming(time.Date(2026, 11, 29, 14, 0, 0, 0, loc), 48*time.Hour, 1); len(got) != 1 || !got[0].Start.Equal(want[1].Start) {
		t.Errorf("after the window: %v", got)
	}
}
