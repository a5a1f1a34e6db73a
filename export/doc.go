// Package export writes signed audit exports of ledger entries (CSV, JSON
// Lines, PDF) and verifies them offline.
//
// An export is a stream of ledger records followed by a signed manifest. The
// caller encodes entries in ascending seq (an export may be a subset of the
// chain: a period, or one pipeline's entries), then closes the encoder, which
// writes the manifest and returns it:
//
//	enc, err := export.NewEncoder(w, export.Options{Format: "csv", Key: key, Head: head, ...})
//	for each entry { enc.Encode(e) }
//	manifest, err := enc.Close()
//
// Memory does not grow with the number of records for CSV and JSON (the
// encoders keep a running digest and the compact list of seq ranges only);
// the PDF report keeps a small summary of every entry and run in memory.
//
// # Records
//
// Every record carries the ledger columns seq, time, kind, subject, actor,
// prev_hash, hash and data (canonical JSON), so that each record's hash can be
// recomputed offline with [ica.LedgerEntry.ComputeHash]. Times are RFC 3339
// with nanoseconds in UTC, as hashed.
//
// # Manifest
//
// The manifest ([Manifest]) records the requested period and filter, the
// number of records (in total and by kind), the first and last seq, the seqs
// included as a compact range list ("1-500,702-900,905"), a digest, the signed
// checkpoint of the ledger head at export time, the generation time, the
// Ed25519 public key and its fingerprint ([ica.KeyFingerprint]) and a
// signature.
//
//   - digest = hex SHA-256 over the lines "<seq>:<hash>\n" of every record, in
//     file order;
//   - signature = hex Ed25519 signature over the canonical JSON
//     ([ica.CanonicalJSON]: sorted keys, no spaces) of the manifest object
//     without its "signature" member.
//
// # CSV
//
// A header row, one row per record, then a trailer of lines starting with '#':
//
//	seq,time,kind,subject,actor,prev_hash,hash,data,run_id,pipeline,status
//	1,2025-03-01T09:00:00Z,run.started,r-1,azp,0000…,9f2c…,"{""run_id"":""r-1"",…}",r-1,payments,running
//	…
//	# ica-export v1: 1234 records, seq 1..1234, signed by key 3f1a:…
//	# ica-manifest {"count":1234,…,"signature":"…"}
//
// Fields follow RFC 4180 (quoted when they hold a comma, quote or line break;
// quotes doubled) and lines end in "\n". run_id, pipeline and status are
// read from data for people reading the file in a spreadsheet; they are not
// covered by the hash and are ignored by verification (a value starting with
// =, +, - or @ is prefixed with ' so spreadsheets do not run it as a formula).
// Verification finds columns by header name, so columns may be reordered, but
// the ledger columns must be byte-for-byte what was exported. The line
// "# ica-manifest " followed by the manifest JSON must be the last line.
//
// # JSON
//
// JSON Lines (one JSON object per line, "\n"-terminated):
//
//	{"type":"header","format":"ica-export","version":1,"from":…,"to":…,"filter":…,"generated_at":…,"public_key":…,"fingerprint":…}
//	{"type":"entry","seq":1,"time":…,"kind":…,"subject":…,"actor":…,"data":{…},"prev_hash":…,"hash":…}
//	…
//	{"type":"manifest","manifest":{…}}
//
// The header is informational; verification checks that it agrees with the
// signed manifest.
//
// # PDF
//
// A report for people: a cover page (period, generation time, counts by kind,
// chain head, key fingerprint), charts of runs per day by status and of
// approvals by outcome, a runs summary, the ledger entries table and the
// manifest. The manifest JSON is also stored in the document's Keywords
// metadata ("ica-manifest {…}").
//
// Limit: the records drawn on the pages cannot be read back reliably, so
// verifying a PDF checks only the embedded manifest (its signature, the head
// checkpoint and the key fingerprint); [Report.RecordsVerified] is false. To
// check the records themselves, verify the CSV or JSON export of the same
// range: its manifest carries the same digest.
//
// # Verification
//
// [Verify] detects the format, recomputes every record's hash (an edited
// record), checks that seqs strictly ascend (reordered or duplicated
// records), checks prev_hash linkage wherever two consecutive records are
// consecutive in the chain, compares the records' seqs with the manifest's
// range list (a deleted or inserted record, named by its seq), and checks the
// count, digest, manifest signature, key fingerprint and head checkpoint. The
// report names the first bad record.
package export
