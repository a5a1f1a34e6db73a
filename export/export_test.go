package export

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ica-governance/ica"
)

func TestEncoder_RoundTrip(t *testing.T) {
	c := sample(t, 12)
	for _, format := range []string{FormatCSV, FormatJSON, FormatPDF} {
		t.Run(format, func(t *testing.T) {
			b, m := mustExport(t, format, c.entries, c.head())
			rep := mustVerifyOK(t, b)
			require.Equal(t, format, rep.Format)
			require.Equal(t, uint64(len(c.entries)), rep.Records)
			require.Equal(t, uint64(1), rep.FirstSeq)
			require.Equal(t, uint64(len(c.entries)), rep.LastSeq)
			require.Equal(t, m, rep.Manifest)
			require.Equal(t, ica.KeyFingerprint(hex.EncodeToString(testKey.Public().(ed25519.PublicKey))), rep.Fingerprint)
			require.Equal(t, format != FormatPDF, rep.RecordsVerified)
			require.NoError(t, m.VerifySignature())
			require.Equal(t, fmt.Sprintf("1-%d", len(c.entries)), m.Seqs)
			require.Equal(t, uint64(12), m.CountsByKind[ica.KindRunStarted])
			if format == FormatPDF {
				require.Len(t, rep.Warnings, 1)
				require.Contains(t, rep.Warnings[0], "only the embedded manifest was verified")
			} else {
				require.Empty(t, rep.Warnings)
			}
			require.Contains(t, rep.String(), "OK: "+format+" export verifies")
		})
	}
}

func TestEncoder_SameManifestContentAcrossFormats(t *testing.T) {
	c := sample(t, 5)
	_, mc := mustExport(t, FormatCSV, c.entries, c.head())
	_, mj := mustExport(t, FormatJSON, c.entries, c.head())
	_, mp := mustExport(t, FormatPDF, c.entries, c.head())
	require.Equal(t, mc.Digest, mj.Digest)
	require.Equal(t, mc.Digest, mp.Digest)
	require.Equal(t, mc.Seqs, mp.Seqs)
}

func TestVerify_Subset(t *testing.T) {
	c := sample(t, 9)
	var subset []*ica.LedgerEntry
	for _, e := range c.entries {
		if strings.HasPrefix(e.Subject, "payments-") || strings.HasPrefix(e.Subject, "apr-payments-") {
			subset = append(subset, e)
		}
	}
	for _, format := range []string{FormatCSV, FormatJSON, FormatPDF} {
		t.Run(format, func(t *testing.T) {
			b, m := mustExport(t, format, subset, c.head())
			require.Equal(t, 3, strings.Count(m.Seqs, ",")+1, m.Seqs)
			rep := mustVerifyOK(t, b)
			require.Equal(t, uint64(len(subset)), rep.Records)
			require.Equal(t, subset[0].Seq, rep.FirstSeq)
		})
	}
}

func TestVerify_Empty(t *testing.T) {
	c := newChain(t)
	for _, format := range []string{FormatCSV, FormatJSON, FormatPDF} {
		t.Run(format, func(t *testing.T) {
			b, m := mustExport(t, format, nil, c.head())
			require.Equal(t, uint64(0), m.Count)
			require.Equal(t, "", m.Seqs)
			rep := mustVerifyOK(t, b)
			require.Equal(t, uint64(0), rep.Records)
		})
	}
	// an empty export of a non-empty ledger (nothing in the period)
	c = sample(t, 2)
	b, _ := mustExport(t, FormatCSV, nil, c.head())
	mustVerifyOK(t, b)
}

// lines splits an export into lines keeping their "\n".
func lines(b []byte) [][]byte { return bytes.SplitAfter(b, []byte("\n")) }

// lineOf returns the index of the record line for seq.
func lineOf(t *testing.T, ls [][]byte, format string, seq uint64) int {
	t.Helper()
	prefix := fmt.Sprintf("%d,", seq)
	if format == FormatJSON {
		prefix = fmt.Sprintf(`{"type":"entry","seq":%d,`, seq)
	}
	for i, l := range ls {
		if bytes.HasPrefix(l, []byte(prefix)) {
			return i
		}
	}
	t.Fatalf("no line for seq %d", seq)
	return -1
}

// rewrite replaces the record for seq with e, encoded in the same format.
func rewrite(t *testing.T, b []byte, format string, e *ica.LedgerEntry) []byte {
	t.Helper()
	one, _ := mustExport(t, format, []*ica.LedgerEntry{e}, ica.SignCheckpoint(testKey, e.Seq, e.Hash, t0))
	ls := lines(b)
	ls[lineOf(t, ls, format, e.Seq)] = lines(one)[1]
	return bytes.Join(ls, nil)
}

// TestVerify_Tampered checks that each kind of tampering is reported
// with the first bad record named exactly.
func TestVerify_Tampered(t *testing.T) {
	c := sample(t, 6) // 6 runs: 7 entries for even runs, 4 for odd: 33 entries
	n := uint64(len(c.entries))
	for _, format := range []string{FormatCSV, FormatJSON} {
		t.Run(format, func(t *testing.T) {
			orig, _ := mustExport(t, format, c.entries, c.head())
			cases := []struct {
				name    string
				tamper  func([]byte) []byte
				problem string
				seq     uint64
			}{
				{"edited actor", func(b []byte) []byte {
					ls := lines(b)
					i := lineOf(t, ls, format, 5)
					ls[i] = bytes.Replace(ls[i], []byte("bob"), []byte("mallory"), 1)
					return bytes.Join(ls, nil)
				}, "record seq 5 was edited (hash mismatch)", 5},
				{"edited data", func(b []byte) []byte {
					ls := lines(b)
					i := lineOf(t, ls, format, 11)
					ls[i] = bytes.Replace(ls[i], []byte("stage.completed"), []byte("stage.skipped"), 1)
					return bytes.Join(ls, nil)
				}, "record seq 11 was edited (hash mismatch)", 11},
				{"edited hash", func(b []byte) []byte {
					e := *c.entries[2]
					e.Hash = strings.Repeat("0", 64)
					return rewrite(t, b, format, &e)
				}, "record seq 3 was edited (hash mismatch)", 3},
				{"deleted record", func(b []byte) []byte {
					ls := lines(b)
					i := lineOf(t, ls, format, 7)
					return bytes.Join(append(ls[:i:i], ls[i+1:]...), nil)
				}, "record seq 7 is missing", 7},
				{"deleted first record", func(b []byte) []byte {
					ls := lines(b)
					i := lineOf(t, ls, format, 1)
					return bytes.Join(append(ls[:i:i], ls[i+1:]...), nil)
				}, "record seq 1 is missing", 1},
				{"deleted last record", func(b []byte) []byte {
					ls := lines(b)
					i := lineOf(t, ls, format, n)
					return bytes.Join(append(ls[:i:i], ls[i+1:]...), nil)
				}, fmt.Sprintf("record seq %d is missing", n), n},
				{"swapped records", func(b []byte) []byte {
					ls := lines(b)
					i, j := lineOf(t, ls, format, 9), lineOf(t, ls, format, 10)
					ls[i], ls[j] = ls[j], ls[i]
					return bytes.Join(ls, nil)
				}, "records seq 9 and 10 are out of order (seq 9 comes after seq 10)", 9},
				{"duplicated record", func(b []byte) []byte {
					ls := lines(b)
					i := lineOf(t, ls, format, 4)
					ls = append(ls[:i+1], append([][]byte{ls[i]}, ls[i+1:]...)...)
					return bytes.Join(ls, nil)
				}, "record seq 4 appears twice", 4},
				{"rewritten with recomputed hash", func(b []byte) []byte {
					e := *c.entries[4]
					e.Actor = "mallory"
					e.Hash, _ = e.ComputeHash()
					return rewrite(t, b, format, &e)
				}, "record seq 5 does not link to seq 6 (seq 6's prev_hash is not seq 5's hash): one of them was rewritten", 5},
				{"last record rewritten with recomputed hash", func(b []byte) []byte {
					e := *c.entries[n-1]
					e.Actor = "mallory"
					e.Hash, _ = e.ComputeHash()
					return rewrite(t, b, format, &e)
				}, fmt.Sprintf("record seq %d does not match the signed head checkpoint (hash differs): it was rewritten", n), n},
				{"inserted record", func(b []byte) []byte {
					ls := lines(b)
					e := *c.entries[n-1]
					e.Seq = n + 1
					e.PrevHash = c.entries[n-1].Hash
					e.Hash, _ = e.ComputeHash()
					one, _ := mustExport(t, format, []*ica.LedgerEntry{&e}, ica.SignCheckpoint(testKey, e.Seq, e.Hash, t0))
					i := lineOf(t, ls, format, n)
					ls = append(ls[:i+1], append([][]byte{lines(one)[1]}, ls[i+1:]...)...)
					return bytes.Join(ls, nil)
				}, fmt.Sprintf("record seq %d is not listed in the manifest (inserted)", n+1), n + 1},
				{"changed signature", func(b []byte) []byte {
					i := bytes.LastIndex(b, []byte(`"signature":"`)) + len(`"signature":"`)
					b = bytes.Clone(b)
					b[i] = map[byte]byte{'0': '1'}[b[i]] | 0
					if b[i] == 0 {
						b[i] = '0'
					}
					return b
				}, "manifest signature does not verify", 0},
				{"changed manifest count", func(b []byte) []byte {
					return bytes.Replace(b, []byte(fmt.Sprintf(`"count":%d`, n)), []byte(fmt.Sprintf(`"count":%d`, n-1)), 1)
				}, "manifest signature does not verify", 0},
				{"changed head checkpoint", func(b []byte) []byte {
					h := c.head()
					return bytes.Replace(b, []byte(h.Hash), []byte(strings.Repeat("a", 64)), 1)
				}, "", 0}, // head hash also occurs in the last record: checked below
				{"cut in a record", func(b []byte) []byte {
					ls := lines(b)
					i := lineOf(t, ls, format, 20)
					return bytes.Join(append(ls[:i:i], ls[i][:len(ls[i])/2]), nil)
				}, "file is truncated: manifest missing and the last line is cut off (last complete record: seq 19)", 0},
				{"cut after a record", func(b []byte) []byte {
					ls := lines(b)
					i := lineOf(t, ls, format, 20)
					return bytes.Join(ls[:i+1], nil)
				}, "file is truncated: manifest missing (last complete record: seq 20)", 0},
				{"cut in the manifest", func(b []byte) []byte {
					return b[:len(b)-40]
				}, "file is truncated: the manifest line is incomplete", 0},
				{"manifest line removed", func(b []byte) []byte {
					ls := lines(b)
					return bytes.Join(ls[:len(ls)-2], nil)
				}, fmt.Sprintf("file is truncated: manifest missing (last complete record: seq %d)", n), 0},
			}
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					b := tc.tamper(bytes.Clone(orig))
					require.False(t, bytes.Equal(orig, b), "tampering changed nothing")
					if tc.problem == "" {
						rep, err := Verify(bytes.NewReader(b))
						require.Error(t, err)
						require.NotEmpty(t, rep.Problem)
						return
					}
					mustVerifyFail(t, b, tc.problem, tc.seq)
				})
			}
		})
	}
}

// TestVerify_FirstProblemWins checks that with two problems the one at
// the lower seq is named.
func TestVerify_FirstProblemWins(t *testing.T) {
	c := sample(t, 4)
	b, _ := mustExport(t, FormatCSV, c.entries, c.head())
	ls := lines(b)
	// edit seq 12, delete seq 6: the deletion comes first
	i := lineOf(t, ls, FormatCSV, 12)
	ls[i] = bytes.Replace(ls[i], []byte("azp-"), []byte("xzp-"), 1)
	j := lineOf(t, ls, FormatCSV, 6)
	ls = append(ls[:j:j], ls[j+1:]...)
	mustVerifyFail(t, bytes.Join(ls, nil), "record seq 6 is missing", 6)

	// edit seq 3, delete seq 6: the edit comes first
	ls = lines(b)
	i = lineOf(t, ls, FormatCSV, 3)
	ls[i] = bytes.Replace(ls[i], []byte("azp-"), []byte("xzp-"), 1)
	j = lineOf(t, ls, FormatCSV, 6)
	ls = append(ls[:j:j], ls[j+1:]...)
	mustVerifyFail(t, bytes.Join(ls, nil), "record seq 3 was edited (hash mismatch)", 3)
}

func TestVerify_SubsetRewriteIsCaughtByDigest(t *testing.T) {
	c := sample(t, 6)
	var subset []*ica.LedgerEntry
	for _, e := range c.entries {
		if e.Seq%2 == 0 {
			subset = append(subset, e)
		}
	}
	b, _ := mustExport(t, FormatJSON, subset, c.head())
	e := *c.entries[9] // seq 10, no neighbours in the export
	e.Actor = "mallory"
	e.Hash, _ = e.ComputeHash()
	b = rewrite(t, b, FormatJSON, &e)
	rep := mustVerifyFail(t, b, "records do not match the manifest digest: a record was rewritten with a recomputed hash "+
		"(it cannot be located offline because its neighbours are not in this export)", 0)
	require.Equal(t, uint64(len(subset)), rep.Records)
}

func TestVerify_Keys(t *testing.T) {
	c := sample(t, 2)
	b, m := mustExport(t, FormatCSV, c.entries, c.head())
	other := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{9}, 32))
	otherPub := other.Public().(ed25519.PublicKey)

	rep, err := VerifyWith(bytes.NewReader(b), VerifyOptions{PublicKey: testKey.Public().(ed25519.PublicKey)})
	require.NoError(t, err, rep.Problem)

	rep, err = VerifyWith(bytes.NewReader(b), VerifyOptions{PublicKey: otherPub})
	require.Error(t, err)
	require.Equal(t, fmt.Sprintf("export is signed by key %s, not the trusted key %s",
		m.Fingerprint, ica.KeyFingerprint(hex.EncodeToString(otherPub))), rep.Problem)

	// Re-signing the manifest with another key does not carry the head
	// checkpoint along: the ledger key signed that.
	forged := *m
	forged.Format = "csv"
	require.NoError(t, forged.sign(other))
	raw, err := json.Marshal(&forged)
	require.NoError(t, err)
	ls := lines(b)
	ls[len(ls)-2] = append([]byte(csvManifestPrefix), append(raw, '\n')...)
	mustVerifyFail(t, bytes.Join(ls, nil), fmt.Sprintf("head checkpoint is signed by key %s, the manifest by key %s",
		m.Fingerprint, forged.Fingerprint), 0)

	// A wrong fingerprint field, signed.
	forged = *m
	forged.Fingerprint = "0000"
	require.NoError(t, forged.sign(testKey))
	forged.Fingerprint = "0000"
	forged.Signature = ""
	msg, err := forged.SigningBytes()
	require.NoError(t, err)
	forged.Signature = hex.EncodeToString(ed25519.Sign(testKey, msg))
	raw, _ = json.Marshal(&forged)
	ls[len(ls)-2] = append([]byte(csvManifestPrefix), append(raw, '\n')...)
	mustVerifyFail(t, bytes.Join(ls, nil), fmt.Sprintf("manifest fingerprint 0000 does not match its public key (%s)", m.Fingerprint), 0)
}

func TestVerify_NotAnExport(t *testing.T) {
	cases := map[string]string{
		"":                                     "file is empty",
		"hello,world\n1,2\n":                   `not an ICA CSV export: column "seq" is missing from the header row`,
		"{\"type\":\"entry\"}\n":               `not an ICA JSON export: the first line is not a {"type":"header","format":"ica-export"} object`,
		"%PDF-1.3\n%%EOF\n":                    "PDF has no ICA manifest in its metadata (Keywords): not an ICA export, or the metadata was removed",
		"%PDF-1.3\n/Keywords (hello)\n%%EOF\n": "PDF Keywords do not hold an ICA manifest: not an ICA export, or the metadata was changed",
	}
	for in, want := range cases {
		rep, err := Verify(strings.NewReader(in))
		require.Error(t, err, in)
		require.Equal(t, want, rep.Problem, in)
	}
}

func TestVerify_PDFTamperedManifest(t *testing.T) {
	c := sample(t, 3)
	b, m := mustExport(t, FormatPDF, c.entries, c.head())
	// Change the count in the embedded manifest only.
	tampered := bytes.Replace(b, []byte(fmt.Sprintf(`"count":%d`, m.Count)), []byte(fmt.Sprintf(`"count":%d`, m.Count+1)), 1)
	require.False(t, bytes.Equal(b, tampered))
	mustVerifyFail(t, tampered, "manifest signature does not verify", 0)
	// Cut short.
	mustVerifyFail(t, b[:len(b)-200], "file is truncated: the PDF has no end-of-file marker", 0)
}

func TestVerify_PeriodWarning(t *testing.T) {
	c := sample(t, 3)
	var buf bytes.Buffer
	opt := testOptions(FormatJSON, c.head())
	opt.To = t0.Add(time.Hour)
	enc, err := NewEncoder(&buf, opt)
	require.NoError(t, err)
	for _, e := range c.entries {
		require.NoError(t, enc.Encode(e))
	}
	_, err = enc.Close()
	require.NoError(t, err)
	rep := mustVerifyOK(t, buf.Bytes())
	require.Len(t, rep.Warnings, 1)
	require.Contains(t, rep.Warnings[0], "is not before the end of the stated period (to 2025-03-01T09:00:00Z)")
}

func TestVerify_JSONHeaderMismatch(t *testing.T) {
	c := sample(t, 1)
	b, _ := mustExport(t, FormatJSON, c.entries, c.head())
	b = bytes.Replace(b, []byte(`"filter":"all pipelines","generated_at"`), []byte(`"filter":"pipeline=other","generated_at"`), 1)
	mustVerifyFail(t, b, "the header line does not match the signed manifest (filter)", 0)
}

func TestCSV_QuotingRoundTrip(t *testing.T) {
	c := newChain(t)
	c.add(ica.KindRunStarted, "odd, \"subject\"\nwith newline", " actor with spaces ", map[string]any{
		"run_id": "=cmd|' /C calc'!A0", "pipeline_name": "-2+3", "status": "@SUM(1)", "text": "line1\nline2,\"x\"\r\n",
	})
	c.add(ica.KindRunEvent, "", "", nil)
	b, _ := mustExport(t, FormatCSV, c.entries, c.head())
	require.Contains(t, string(b), `,'=cmd|' /C calc'!A0,'-2+3,'@SUM(1)`+"\n")
	mustVerifyOK(t, b)
	// CRLF line endings (a file re-saved on Windows) still verify.
	mustVerifyOK(t, bytes.ReplaceAll(b, []byte("\n"), []byte("\r\n")))
}

func TestEncoder_Refuses(t *testing.T) {
	c := sample(t, 2)
	head := c.head()
	enc, err := NewCSVEncoder(&bytes.Buffer{}, testOptions("", head))
	require.NoError(t, err)
	require.NoError(t, enc.Encode(c.entries[1]))
	require.ErrorContains(t, enc.Encode(c.entries[0]), "entry seq 1 after seq 2: entries must be in ascending seq")
	require.ErrorContains(t, enc.Encode(c.entries[1]), "entry seq 2 after seq 2")

	past := *c.entries[len(c.entries)-1]
	past.Seq++
	require.ErrorContains(t, enc.Encode(&past), "is past the head checkpoint")

	wrong := *c.entries[len(c.entries)-1]
	wrong.Hash = strings.Repeat("f", 64)
	require.ErrorContains(t, enc.Encode(&wrong), "but the head checkpoint says")

	bad := *c.entries[3]
	bad.Data = []byte("{not json")
	require.ErrorContains(t, enc.Encode(&bad), "entry seq 4: data is not valid JSON")

	_, err = NewEncoder(&bytes.Buffer{}, Options{Format: "xml", Key: testKey, Head: head})
	require.Equal(t, ica.EINVALID, ica.ErrorCode(err))
	_, err = NewEncoder(&bytes.Buffer{}, Options{Format: "csv", Head: head})
	require.ErrorContains(t, err, "needs the Ed25519 ledger key")
	other := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{9}, 32))
	_, err = NewEncoder(&bytes.Buffer{}, Options{Format: "csv", Key: other, Head: head})
	require.ErrorContains(t, err, "head checkpoint is signed by key")
	h := head
	h.Signature = strings.Repeat("0", 128)
	_, err = NewEncoder(&bytes.Buffer{}, Options{Format: "csv", Key: testKey, Head: h})
	require.ErrorContains(t, err, "signature does not verify")

	m, err := enc.Close()
	require.NoError(t, err)
	require.Equal(t, uint64(1), m.Count)
	_, err = enc.Close()
	require.Error(t, err)
	require.Error(t, enc.Encode(c.entries[2]))
}

func TestVerifyFile(t *testing.T) {
	c := sample(t, 2)
	b, _ := mustExport(t, FormatJSON, c.entries, c.head())
	path := filepath.Join(t.TempDir(), "export.jsonl")
	require.NoError(t, os.WriteFile(path, b, 0o600))
	rep, err := VerifyFile(path)
	require.NoError(t, err)
	require.True(t, rep.OK)
	_, err = VerifyFile(filepath.Join(t.TempDir(), "missing"))
	require.Error(t, err)
}

func TestSeqs(t *testing.T) {
	tl := newTally()
	for _, s := range []uint64{1, 2, 3, 7, 9, 10} {
		tl.add(s, "k", "h")
	}
	require.Equal(t, "1-3,7,9-10", tl.seqs())
	rs, err := parseSeqs("1-3,7,9-10")
	require.NoError(t, err)
	require.Equal(t, []seqRange{{1, 3}, {7, 7}, {9, 10}}, rs)
	for _, bad := range []string{"3-1", "1,1", "5,2", "x", "1-", "-1", "1,,2"} {
		_, err := parseSeqs(bad)
		require.Error(t, err, bad)
	}
	// A huge claimed range is compared range by range, not seq by seq.
	seq, msg, differ := seqDiff([]seqRange{{1, 1 << 62}}, []seqRange{{1, 5}})
	require.True(t, differ)
	require.Equal(t, uint64(6), seq)
	require.Equal(t, "record seq 6 is missing", msg)
	_, _, differ = seqDiff([]seqRange{{1, 3}, {5, 9}}, []seqRange{{1, 2}, {3, 3}, {5, 9}})
	require.False(t, differ)
}
