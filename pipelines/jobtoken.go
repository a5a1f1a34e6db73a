package pipelines

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
)

// JobTokenKey seals the Azure DevOps job tokens ICA keeps between a check's
// request and the TaskCompleted it posts (at most the token's 48 hours):
// AES-256-GCM, bound to the callback (ica.CheckCallback.TokenContext).
//
// The key is derived with HKDF-SHA256 from the action secret
// (ICA_ACTION_SECRET) rather than being a secret of its own: it is then never
// in the ledger file or the database (a backup carries only ciphertext), it
// needs no new setting, and every replica is known to hold the same one,
// since replicas already refuse to start with another action secret. Rotating
// the action secret makes the tokens sealed before it unreadable: their
// callbacks fail, saying so, and the checks are re-run from Azure Pipelines.
type JobTokenKey struct {
	aead cipher.AEAD
	id   [4]byte
}

// sealVersion is the first byte of a sealed token: version ‖ key id (4) ‖
// nonce (12) ‖ ciphertext and tag.
const sealVersion = 1

// ErrJobTokenKey is the error of a token sealed with another key.
var ErrJobTokenKey = errors.New("sealed with another key")

// NewJobTokenKey derives the job token key from the action secret.
func NewJobTokenKey(actionSecret []byte) (*JobTokenKey, error) {
	if len(actionSecret) < 16 {
		return nil, errors.New("job token key: the action secret is too short")
	}
	key, err := hkdf.Key(sha256.New, actionSecret, nil, "ica azure devops job token v1", 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	k := &JobTokenKey{aead: aead}
	sum := sha256.Sum256(append([]byte("ica job token key id\x00"), key...))
	copy(k.id[:], sum[:])
	return k, nil
}

// ID names the key in messages (4 bytes of a hash of it, in hex).
func (k *JobTokenKey) ID() string { return hex.EncodeToString(k.id[:]) }

// Seal encrypts a token for the callback whose TokenContext is context.
func (k *JobTokenKey) Seal(token, context []byte) ([]byte, error) {
	out := make([]byte, 1+len(k.id)+k.aead.NonceSize(), 1+len(k.id)+k.aead.NonceSize()+len(token)+k.aead.Overhead())
	out[0] = sealVersion
	copy(out[1:], k.id[:])
	nonce := out[1+len(k.id):]
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return k.aead.Seal(out, nonce, token, context), nil
}

// Open decrypts a sealed token. A token sealed with another key (the action
// secret was rotated, or replicas disagree) is an ErrJobTokenKey that names
// both keys.
func (k *JobTokenKey) Open(sealed, context []byte) ([]byte, error) {
	head := 1 + len(k.id) + k.aead.NonceSize()
	if len(sealed) < head+k.aead.Overhead() || sealed[0] != sealVersion {
		return nil, errors.New("the sealed job token is damaged or of an unknown version")
	}
	if id := sealed[1 : 1+len(k.id)]; string(id) != string(k.id[:]) {
		return nil, fmt.Errorf("%w: the job token was sealed with key %s, this server's key is %s (derived from ICA_ACTION_SECRET: was it changed?)",
			ErrJobTokenKey, hex.EncodeToString(id), k.ID())
	}
	token, err := k.aead.Open(nil, sealed[1+len(k.id):head], sealed[head:], context)
	if err != nil {
		return nil, errors.New("the sealed job token does not open: damaged, or moved to another check")
	}
	return token, nil
}
