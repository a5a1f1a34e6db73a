package pgtest

import (
	"strings"
	"testing"
)

func TestWithDatabase(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"postgres://u:p%40ss@127.0.0.1:5432/postgres?sslmode=disable", "postgres://u:p%40ss@127.0.0.1:5432/ica_x?sslmode=disable"},
		{"postgresql://u@h/db?dbname=other&sslmode=disable", "postgresql://u@h/ica_x?sslmode=disable"},
		{"postgres://u@h", "postgres://u@h/ica_x"},
		{"host=127.0.0.1 user=postgres dbname=postgres", "host=127.0.0.1 user=postgres dbname=postgres dbname=ica_x"},
	} {
		got, err := withDatabase(tc.in, "ica_x")
		if err != nil || got != tc.want {
			t.Errorf("withDatabase(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	if _, err := withDatabase("postgres://u:secret@h:notaport/db", "x"); err == nil {
		t.Error("a malformed URL was accepted")
	} else if got := err.Error(); strings.Contains(got, "secret") {
		t.Errorf("error quotes the password: %s", got)
	}
}

func TestInCI(t *testing.T) {
	for v, want := range map[string]bool{"": false, "false": false, "0": false, "true": true, "1": true} {
		t.Setenv("CI", v)
		if got := InCI(); got != want {
			t.Errorf("CI=%q: InCI() = %v, want %v", v, got, want)
		}
	}
}
