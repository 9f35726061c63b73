package agent

import (
	"io"
	"os"

	"gopkg.in/natefinch/lumberjack.v2"
)

// LogWriter is where the log goes: stderr, or LogFile capped at LogMaxSize
// with one older file, so a chatty camera cannot fill the recorder's flash.
func (c Config) LogWriter() io.WriteCloser {
	if c.LogFile == "" {
		return nopCloser{os.Stderr}
	}
	return &lumberjack.Logger{Filename: c.LogFile, MaxSize: int(c.LogMaxSize >> 20), MaxBackups: 1}
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }
