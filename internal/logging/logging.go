// Package logging bridges pion's logger interface to log/slog, so pion's
// messages land in the same stream, with the same attributes, as everything
// else; and builds the process logger from a level name.
package logging

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/pion/logging"
)

// New returns a text logger on w at the named level (debug, info, warn, error).
func New(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: want debug, info, warn or error", level)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}

// PionFactory makes pion loggers that write to log. Pion is chatty at info
// level, so its messages are demoted one level: pion's info is our debug.
type PionFactory struct {
	Log *slog.Logger
}

// NewLogger implements logging.LoggerFactory.
func (f PionFactory) NewLogger(scope string) logging.LeveledLogger {
	return pionLogger{log: f.Log.With("component", "pion/"+scope)}
}

type pionLogger struct{ log *slog.Logger }

func (p pionLogger) at(l slog.Level, msg string) {
	if p.log.Enabled(context.Background(), l) {
		p.log.Log(context.Background(), l, strings.TrimSpace(msg))
	}
}

func (p pionLogger) Trace(msg string)          { p.at(slog.LevelDebug-4, msg) }
func (p pionLogger) Tracef(f string, a ...any) { p.at(slog.LevelDebug-4, fmt.Sprintf(f, a...)) }
func (p pionLogger) Debug(msg string)          { p.at(slog.LevelDebug-4, msg) }
func (p pionLogger) Debugf(f string, a ...any) { p.at(slog.LevelDebug-4, fmt.Sprintf(f, a...)) }
func (p pionLogger) Info(msg string)           { p.at(slog.LevelDebug, msg) }
func (p pionLogger) Infof(f string, a ...any)  { p.at(slog.LevelDebug, fmt.Sprintf(f, a...)) }
func (p pionLogger) Warn(msg string)           { p.at(level(msg, slog.LevelWarn), msg) }
func (p pionLogger) Warnf(f string, a ...any) {
	m := fmt.Sprintf(f, a...)
	p.at(level(m, slog.LevelWarn), m)
}
func (p pionLogger) Error(msg string) { p.at(level(msg, slog.LevelError), msg) }
func (p pionLogger) Errorf(f string, a ...any) {
	m := fmt.Sprintf(f, a...)
	p.at(level(m, slog.LevelError), m)
}

// closing are what pion says, as a warning or an error, when a session
// ends normally: its goroutines find their streams and sockets closed under
// them, and ICE pings before any pair exists. Each closed session used to
// leave three or four such lines; they are debug now, and the agent's own
// line says the session ended.
var closing = []string{
	"stream is already closed",
	"closed pipe",
	"use of closed network connection",
	"Failed to ping without candidate pairs",
	"buffer: closed",
	"conn is closed",
}

// level is l, or Debug for a message of a normal close.
func level(msg string, l slog.Level) slog.Level {
	for _, c := range closing {
		if strings.Contains(msg, c) {
			return slog.LevelDebug
		}
	}
	return l
}
