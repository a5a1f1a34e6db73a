package main

import (
	"sync/atomic"

	"github.com/ica-governance/ica/webhooks"
)

// serveRoutesHook, when set (by tests), is called by cmdServe with the fully
// assembled handler, just before it listens: the OpenAPI test reads the
// route table through it.
var serveRoutesHook atomic.Pointer[func(h *webhooks.Handler)]
