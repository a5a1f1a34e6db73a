package main

import (
	"sync/atomic"

	"github.com/ica-governance/ica"
	"github.com/ica-governance/ica/webhooks"
)

// serveRoutesHook, when set (by tests), is called by cmdServe with the fully
// assembled handler, just before it listens: the OpenAPI test reads the
// route table through it.
var serveRoutesHook atomic.Pointer[func(h *webhooks.Handler)]

// serveClockHook, when set (by tests), is the clock cmdServe runs on instead
// of the system clock: expiry and reminders are then tested without sleeping.
var serveClockHook atomic.Pointer[ica.FakeClock]
