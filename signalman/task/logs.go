package task

import "bytes"

// MaxLogBytes bounds what a driver reads of a task's log to answer a tail:
// a tail of long lines is cut to the last MaxLogBytes.
const MaxLogBytes = 1 << 20

// TailLines returns the last n lines of b (a trailing partial line counts as
// one line). partial says b starts mid-line (it is a file's end): its first,
// cut line is then dropped unless it is all there is.
func TailLines(b []byte, n int, partial bool) []byte {
	if partial {
		if i := bytes.IndexByte(b, '\n'); i >= 0 && i < len(b)-1 {
			b = b[i+1:]
		}
	}
	if n <= 0 {
		return nil
	}
	end := len(b)
	if end > 0 && b[end-1] == '\n' {
		end-- // the last newline ends the last line, it starts none
	}
	for i := end - 1; i >= 0; i-- {
		if b[i] == '\n' {
			n--
			if n == 0 {
				return b[i+1:]
			}
		}
	}
	return b
}
