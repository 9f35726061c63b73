package agent

import (
	"io"
	"strings"

	"rsc.io/qr"
)

// printQR draws text as a QR code with half-block characters, two modules
// per character row, dark on light, so a phone camera reads it off a terminal.
func printQR(w io.Writer, text string) {
	code, err := qr.Encode(text, qr.M)
	if err != nil {
		return
	}
	_, _ = io.WriteString(w, renderQR(code))
}

func renderQR(code *qr.Code) string {
	const quiet = 2
	n := code.Size
	dark := func(x, y int) bool {
		if x < 0 || y < 0 || x >= n || y >= n {
			return false
		}
		return code.Black(x, y)
	}
	var sb strings.Builder
	for y := -quiet; y < n+quiet; y += 2 {
		for x := -quiet; x < n+quiet; x++ {
			top, bottom := dark(x, y), dark(x, y+1)
			switch {
			case top && bottom:
				sb.WriteString(" ")
			case top:
				sb.WriteString("▄")
			case bottom:
				sb.WriteString("▀")
			default:
				sb.WriteString("█")
			}
		}
		sb.WriteString("\n")
	}
	return sb.String()
}
