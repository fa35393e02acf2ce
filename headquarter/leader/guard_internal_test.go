package leader

import (
	"testing"
	"time"
)

// TestLeaseCheckLeavesTimeToAnswer: the next TimeToLive is sent with time
// left before the deadline for etcd to answer. Before, with left no longer
// than the period (a 3 s TTL whose remaining seconds etcd rounds down to
// 1), the check went out at the deadline and the term ended though the
// lease was renewed.
func TestLeaseCheckLeavesTimeToAnswer(t *testing.T) {
	for _, tc := range []struct{ every, left time.Duration }{
		{time.Second, time.Second},
		{time.Second, 2 * time.Second},
		{time.Second, 500 * time.Millisecond},
		{3333 * time.Millisecond, 9 * time.Second},
	} {
		got := checkIn(tc.every, tc.left)
		if got > tc.every || got >= tc.left || tc.left-got < tc.left/2 {
			t.Errorf("checkIn(%s, %s) = %s: want at most the period and at least half of what is left kept for the answer", tc.every, tc.left, got)
		}
	}
}
