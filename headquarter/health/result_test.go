package health

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

func mustJSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestResultJSON(t *testing.T) {
	cst := time.FixedZone("CST", 8*3600)
	for _, tc := range []struct {
		name string
		r    Result
		want string
	}{
		{
			"nothing yet",
			Result{TaskID: "ktv_account.1f0c", InstanceID: "ktv_account.1f0c"},
			`{"alive":false,"consecutiveFailures":0,"firstSuccess":null,"lastSuccess":null,"lastFailure":null,"lastFailureCause":null,"taskId":"ktv_account.1f0c","instanceId":"ktv_account.1f0c"}`,
		},
		{
			"alive, times in UTC with milliseconds",
			Result{
				Alive:        true,
				FirstSuccess: time.Date(2015, 9, 25, 23, 13, 48, 343_999_999, cst),
				LastSuccess:  time.Date(2015, 9, 25, 15, 14, 0, 0, time.UTC),
				TaskID:       "t", InstanceID: "i",
			},
			`{"alive":true,"consecutiveFailures":0,"firstSuccess":"2015-09-25T15:13:48.343Z","lastSuccess":"2015-09-25T15:14:00.000Z","lastFailure":null,"lastFailureCause":null,"taskId":"t","instanceId":"i"}`,
		},
		{
			"failing",
			Result{
				ConsecutiveFailures: 2,
				LastFailure:         time.Date(2015, 9, 25, 15, 13, 48, 343_000_000, time.UTC),
				LastFailureCause:    "HTTP 127.0.0.1:31005/: HTTP 500 Internal Server Error",
				TaskID:              "t", InstanceID: "i",
			},
			`{"alive":false,"consecutiveFailures":2,"firstSuccess":null,"lastSuccess":null,"lastFailure":"2015-09-25T15:13:48.343Z","lastFailureCause":"HTTP 127.0.0.1:31005/: HTTP 500 Internal Server Error","taskId":"t","instanceId":"i"}`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := mustJSON(t, tc.r); got != tc.want {
				t.Fatalf("JSON\n got %s\nwant %s", got, tc.want)
			}
			var back Result
			if err := json.Unmarshal([]byte(tc.want), &back); err != nil {
				t.Fatal(err)
			}
			if got := mustJSON(t, back); got != tc.want {
				t.Fatalf("round trip\n got %s\nwant %s", got, tc.want)
			}
		})
	}
}

func TestResultUnmarshalErrors(t *testing.T) {
	var r Result
	err := json.Unmarshal([]byte(`{"alive":true,"firstSuccess":"yesterday"}`), &r)
	if err == nil || !strings.Contains(err.Error(), "firstSuccess") {
		t.Fatalf("error = %v, want one naming firstSuccess", err)
	}
}

// TestLiveResultJSON checks the JSON of results the monitor produced, keys
// and nulls as Marathon's healthCheckResults.
func TestLiveResultJSON(t *testing.T) {
	tg := newTarget(t, http.StatusOK)
	clock := newClock(time.Date(2015, 9, 25, 15, 13, 48, 343_000_000, time.UTC))
	h := start(t, WithNow(clock.now))
	h.add(t, "t1", time.Time{}, tg.check(t))
	recv(t, h.changes, "alive")
	want := `[{"alive":true,"consecutiveFailures":0,"firstSuccess":"2015-09-25T15:13:48.343Z","lastSuccess":"2015-09-25T15:13:48.343Z","lastFailure":null,"lastFailureCause":null,"taskId":"t1","instanceId":"inst-t1"}]`
	if got := mustJSON(t, h.m.Results("t1")); got != want {
		t.Fatalf("JSON\n got %s\nwant %s", got, want)
	}
	var generic []map[string]any
	if err := json.Unmarshal([]byte(want), &generic); err != nil {
		t.Fatal(err)
	}
	if len(generic[0]) != 8 {
		t.Fatalf("%d keys, want Marathon's 7 plus taskId", len(generic[0]))
	}
}
