package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"strconv"
	"strings"
	"time"
)

// hmacHex checks a hex HMAC-SHA256 of body in constant time.
func hmacHex(secret string, body []byte, sigHex string) bool {
	got, err := hex.DecodeString(strings.TrimSpace(sigHex))
	if err != nil {
		return false
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return hmac.Equal(mac.Sum(nil), got)
}

// tokenEqual compares a shared token in constant time (for equal lengths;
// the length itself is not secret enough to matter).
func tokenEqual(secret, got string) bool {
	return got != "" && subtle.ConstantTimeCompare([]byte(secret), []byte(got)) == 1
}

// StandardWindow is how far a Standard Webhooks timestamp may be from the
// clock, either way.
const StandardWindow = 5 * time.Minute

// standardWebhook checks a Standard Webhooks signature: webhook-signature
// holds space-separated "v1,<base64 HMAC-SHA256(key, id.timestamp.body)>"
// entries; a secret written whsec_<base64> is that key decoded.
func standardWebhook(secret, id, timestamp, signatures string, body []byte, now time.Time) (bool, string) {
	ts, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return false, "webhook-timestamp is not Unix seconds"
	}
	if d := now.Sub(time.Unix(ts, 0)); d > StandardWindow || d < -StandardWindow {
		return false, "webhook-timestamp is too far from the clock"
	}
	want := standardMAC(secret, id, timestamp, body)
	for _, s := range strings.Fields(signatures) {
		v, sig, ok := strings.Cut(s, ",")
		if !ok || v != "v1" {
			continue
		}
		got, err := base64.StdEncoding.DecodeString(sig)
		if err == nil && hmac.Equal(want, got) {
			return true, ""
		}
	}
	return false, "webhook-signature does not match"
}

// SignStandard returns the webhook-signature value for a delivery, as a
// sender computes it (the post-receive script, garrison's own
// notifications, tests).
func SignStandard(secret, id, timestamp string, body []byte) string {
	return "v1," + base64.StdEncoding.EncodeToString(standardMAC(secret, id, timestamp, body))
}

func standardMAC(secret, id, timestamp string, body []byte) []byte {
	key := []byte(secret)
	if k, ok := strings.CutPrefix(secret, "whsec_"); ok {
		if dec, err := base64.StdEncoding.DecodeString(k); err == nil {
			key = dec
		}
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + timestamp + "."))
	mac.Write(body)
	return mac.Sum(nil)
}
