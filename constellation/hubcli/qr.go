package hubcli

import (
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/sys/unix"
	"rsc.io/qr"
)

// WriteQR prints text as a QR code with half-block characters, two modules
// per character cell. Colors are set explicitly (black on white) so that the
// code scans on dark and light terminals alike.
func WriteQR(w io.Writer, text string) error {
	code, err := qr.Encode(text, qr.M)
	if err != nil {
		return fmt.Errorf("encoding QR code: %w", err)
	}
	const quiet = 2
	n := code.Size
	dark := func(x, y int) bool {
		if x < 0 || y < 0 || x >= n || y >= n {
			return false
		}
		return code.Black(x, y)
	}
	var b strings.Builder
	for y := -quiet; y < n+quiet; y += 2 {
		for x := -quiet; x < n+quiet; x++ {
			fg, bg := 97, 107 // bright white
			if dark(x, y) {
				fg = 30
			}
			if dark(x, y+1) {
				bg = 40
			}
			fmt.Fprintf(&b, "\x1b[%d;%dm▀", fg, bg)
		}
		b.WriteString("\x1b[0m\n")
	}
	_, err = io.WriteString(w, b.String())
	return err
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
