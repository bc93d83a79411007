package fxshutdown

import (
	"context"
	"log/slog"
	"slices"

	"go.uber.org/zap/zapcore"
)

// slogCore is a zapcore.Core that writes to an slog.Handler, so that the
// module logs through zap alone and an application that logs with log/slog
// gets the same entries, with the same fields, through its own logger. zap
// provides the other direction only (go.uber.org/zap/exp/zapslog, an
// slog.Handler that writes to zap), hence this one by hand. The logger's name
// becomes the attribute "logger".
type slogCore struct {
	h      slog.Handler
	fields []zapcore.Field // from With
}

func (c *slogCore) Enabled(l zapcore.Level) bool {
	return c.h.Enabled(context.Background(), slogLevel(l))
}

func (c *slogCore) With(fields []zapcore.Field) zapcore.Core {
	return &slogCore{h: c.h, fields: append(slices.Clip(c.fields), fields...)}
}

func (c *slogCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

// Write hands the entry to the handler as a record, its fields in order as
// attributes with the values zap's map encoder gives them (int64, uint64,
// time.Duration, string, and so on).
func (c *slogCore) Write(e zapcore.Entry, fields []zapcore.Field) error {
	r := slog.NewRecord(e.Time, slogLevel(e.Level), e.Message, 0)
	if e.LoggerName != "" {
		r.AddAttrs(slog.String("logger", e.LoggerName))
	}
	for _, f := range slices.Concat(c.fields, fields) {
		enc := zapcore.NewMapObjectEncoder()
		f.AddTo(enc)
		for key, v := range enc.Fields { // one, or none for zap.Skip
			r.AddAttrs(slog.Any(key, v))
		}
	}
	return c.h.Handle(context.Background(), r)
}

func (c *slogCore) Sync() error { return nil }

func slogLevel(l zapcore.Level) slog.Level {
	switch {
	case l <= zapcore.DebugLevel:
		return slog.LevelDebug
	case l == zapcore.InfoLevel:
		return slog.LevelInfo
	case l == zapcore.WarnLevel:
		return slog.LevelWarn
	default:
		return slog.LevelError
	}
}
