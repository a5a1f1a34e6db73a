package entraid_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ica-governance/ica"
	"github.com/ica-governance/ica/entraid"
)

// FuzzValidate checks that no input panics, that every failure is an
// *ica.Error with one of the documented codes, and that no error message
// echoes the token.
func FuzzValidate(f *testing.F) {
	e := newEnv(f)
	e.cfg.JWKSURL = e.idp.srv.URL + "/" + tenant + "/discovery/v2.0/keys"
	v0 := e.validator(f)
	v, err := v0.Surface(entraid.Policy{Name: "fuzz", Caller: entraid.CallerApp, Roles: []string{"Pipeline.Write"}})
	if err != nil {
		f.Fatal(err)
	}

	good := mustSign(f, key(f, 0), map[string]any{"kid": "k0"}, v1Claims())
	f.Add(good)
	f.Add(mustSign(f, key(f, 1), map[string]any{"kid": "k1"}, v2Claims()))
	f.Add(mustSign(f, key(f, 0), map[string]any{"kid": "k0", "alg": "RS512"}, v1Claims()))
	f.Add(hs256(f, []byte("secret"), map[string]any{"kid": "k0"}, v1Claims()))
	f.Add(readFixture(f, "sample-access-token-v1.jwt.txt"))
	f.Add(readFixture(f, "sample-access-token-v2.jwt.txt"))
	f.Add("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.")
	f.Add(encodeSegment(f, `{"alg":"RS256","kid":"k0"}`) + "." + encodeSegment(f, `{"exp":1e400,"nbf":-1,"iat":"x","aud":[1]}`) + ".AAAA")
	f.Add(encodeSegment(f, `{"alg":"RS256","kid":"k0"}`) + "." + encodeSegment(f, `{"exp":NaN}`) + ".AAAA")
	f.Add("..")
	f.Add("")
	f.Add(strings.Repeat(".", 100))

	f.Fuzz(func(t *testing.T, raw string) {
		_ = entraid.LooksLikeJWT(raw)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		p, err := v.Validate(ctx, raw)
		if err == nil {
			if p == nil {
				t.Fatal("nil principal without error")
			}
			return
		}
		if p != nil {
			t.Fatal("principal with error")
		}
		var ie *ica.Error
		if !errors.As(err, &ie) {
			t.Fatalf("not an *ica.Error: %T %v", err, err)
		}
		switch ie.Code {
		case ica.EUNAUTHORIZED, ica.EFORBIDDEN, ica.EUNAVAILABLE:
		default:
			t.Fatalf("unexpected code %s: %v", ie.Code, err)
		}
		if len(raw) >= 24 && strings.Contains(err.Error(), raw) {
			t.Fatalf("error echoes the token: %v", err)
		}
	})
}
