package main

// The clicks scenario: many pending approvals, several people clicking the
// buttons of each card at once (double clicks, technical and business
// approvers racing), against the real `ica serve` connected to the fake
// Mattermost of bot/mmtest. Clicks go straight to ICA's
// POST /mattermost/actions with the body Mattermost sends.

import (
	"bufio"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mattermost/mattermost/server/public/model"

	"github.com/ica-governance/ica/bench"
)

type clicksConfig struct {
	approvals, baseline int
	inflight, reps      int
	probe               int
	cardTimeout         time.Duration
	dir, repo, bin      string
	keep                bool
}

const (
	clkTeam    = "ica"
	clkChannel = "deployments"
)

var (
	clkTech     = []string{"tech1", "tech2"}
	clkBusiness = []string{"biz1", "biz2"}
)

func runClicks(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var c clicksConfig
	fs := flag.NewFlagSet("clicks", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&c.approvals, "approvals", 10000, "pending approvals clicked by 4 clickers each")
	fs.IntVar(&c.baseline, "baseline-approvals", 2000, "approvals of the 1-clicker baseline (0: same as -approvals)")
	fs.IntVar(&c.inflight, "inflight", 16, "approvals being clicked at the same time (x4 concurrent clicks; baseline x1)")
	fs.IntVar(&c.probe, "probe", 200, "approvals requested concurrently (32 at once) and never clicked, to count those that get no card of their own")
	fs.IntVar(&c.reps, "reps", 1, "repetitions of each measurement; figures are medians")
	fs.DurationVar(&c.cardTimeout, "card-timeout", 10*time.Minute, "bound on waiting for ICA to post every card")
	fs.StringVar(&c.dir, "dir", "", "parent of the temporary ledgers (default: the system temp dir)")
	fs.BoolVar(&c.keep, "keep", false, "keep the temporary directory")
	fs.StringVar(&c.repo, "repo", "", "ICA repository to build (default: found from the working directory)")
	fs.StringVar(&c.bin, "bin", "", "use this ica binary instead of building one")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if c.baseline == 0 {
		c.baseline = c.approvals
	}
	if c.approvals < 1 || c.baseline < 1 || c.inflight < 1 || c.reps < 1 {
		fmt.Fprintln(stderr, "icabench clicks: -approvals, -baseline-approvals, -inflight, -reps must be >= 1")
		return 2
	}
	code, err := clicks(ctx, c, stdout)
	if err != nil {
		fmt.Fprintln(stderr, "icabench clicks:", err)
		return 2
	}
	return code
}

// scnPrepare makes the temporary directory and finds or builds ica.
func scnPrepare(ctx context.Context, name, dir string, keep bool, repo, bin string, stdout io.Writer) (root, icaBin string, cleanup func(), err error) {
	root, err = os.MkdirTemp(dir, "icabench-"+name+"-")
	if err != nil {
		return "", "", nil, err
	}
	cleanup = func() { os.RemoveAll(root) }
	if keep {
		fmt.Fprintln(stdout, "keeping", root)
		cleanup = func() {}
	}
	if bin != "" {
		return root, bin, cleanup, nil
	}
	if repo == "" {
		wd, _ := os.Getwd()
		if repo, err = bench.RepoRoot(wd); err != nil {
			cleanup()
			return "", "", nil, err
		}
	}
	fmt.Fprintf(stdout, "building ica from %s ...\n", repo)
	if icaBin, err = bench.BuildICA(ctx, repo, root); err != nil {
		cleanup()
		return "", "", nil, err
	}
	return root, icaBin, cleanup, nil
}

// clickRep is one measured run of one mode.
type clickRep struct {
	clickers, approvals int
	setup, cardWait     time.Duration
	wall                time.Duration // the click phase
	clicks              int64
	lat                 []time.Duration
	// Replies by kind.
	appliedTech, appliedBiz, refusedOrder, refusedDone, other atomic.Int64
	timeouts, failed                                          atomic.Int64 // no answer in 30 s; non-200 / transport error
	problems                                                  []string     // first few, for the report
	badFinal                                                  int          // approvals not in exactly one correct state
	ledgerBad                                                 int          // approvals without exactly one technical_approved and one approved entry
	dupCards                                                  int          // approvals whose card post id another approval also has
	sigMismatch                                               int
	probeShared                                               int // probe approvals whose card post another approval also has
	checkOK                                                   bool
	checkOut                                                  string
	peakRSS                                                   int64
	outboxLeft                                                float64
	deliveries                                                float64
	mu                                                        sync.Mutex
}

func (r *clickRep) problem(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.problems) < 8 {
		r.problems = append(r.problems, fmt.Sprintf(format, args...))
	}
}

func (r *clickRep) perSec() float64 { return float64(r.clicks) / r.wall.Seconds() }
func (r *clickRep) p(q float64) float64 {
	return bench.Ms(bench.Percentile(r.lat, q))
}
func (r *clickRep) correct() bool {
	return r.badFinal == 0 && r.ledgerBad == 0 && r.timeouts.Load() == 0 && r.failed.Load() == 0 &&
		r.other.Load() == 0 && r.checkOK && r.dupCards == 0 && int(r.appliedTech.Load()) == r.approvals && int(r.appliedBiz.Load()) == r.approvals
}

func clicks(ctx context.Context, c clicksConfig, stdout io.Writer) (int, error) {
	root, bin, cleanup, err := scnPrepare(ctx, "clicks", c.dir, c.keep, c.repo, c.bin, stdout)
	if err != nil {
		return 0, err
	}
	defer cleanup()
	fmt.Fprintf(stdout, "clicks: %d approvals x 4 clickers (2 technical approvers double-clicking, 2 business approvers racing), baseline %d approvals x 1 clicker, %d approvals in flight, %d repetitions\n",
		c.approvals, c.baseline, c.inflight, c.reps)
	fmt.Fprintf(stdout, "machine: %d CPUs (GOMAXPROCS %d), %s; temp dir %s (%s)\n", runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.Version(), root, fsInfo(root))

	var four, one []*clickRep
	for i := range c.reps {
		for _, clickers := range []int{1, 4} {
			if ctx.Err() != nil {
				return 0, ctx.Err()
			}
			n := c.approvals
			if clickers == 1 {
				n = c.baseline
			}
			r, err := clicksRep(ctx, c, bin, filepath.Join(root, fmt.Sprintf("ica-%dx-%d", clickers, i+1)), n, clickers)
			if err != nil {
				return 0, fmt.Errorf("repetition %d (%d clickers): %w", i+1, clickers, err)
			}
			if clickers == 1 {
				one = append(one, r)
			} else {
				four = append(four, r)
			}
			fmt.Fprintf(stdout, "rep %d, %d clicker(s): %d approvals created in %s, cards posted after %s; %d clicks in %s = %.0f clicks/s, p50 %.1f ms, p99 %.1f ms, max %.1f ms\n",
				i+1, clickers, r.approvals, r.setup.Round(time.Millisecond), r.cardWait.Round(time.Millisecond), r.clicks, r.wall.Round(time.Millisecond),
				r.perSec(), r.p(50), r.p(99), r.p(100))
			fmt.Fprintf(stdout, "           replies: %d technical applied, %d business applied, %d refused (business before technical), %d refused (already decided / double click), %d unexpected; %d timeouts, %d failed\n",
				r.appliedTech.Load(), r.appliedBiz.Load(), r.refusedOrder.Load(), r.refusedDone.Load(), r.other.Load(), r.timeouts.Load(), r.failed.Load())
			fmt.Fprintf(stdout, "           final state: %d approvals not approved-once-by-the-right-people, %d without exactly one technical_approved + one approved ledger entry, %d duplicate card posts, %d context signature mismatches; ica check %s; server peak RSS %.1f MB; outbox: %.0f Mattermost deliveries, %.0f still queued at the end\n",
				r.badFinal, r.ledgerBad, r.dupCards, r.sigMismatch, passWord(r.checkOK), bench.MB(r.peakRSS), r.deliveries, r.outboxLeft)
			fmt.Fprintf(stdout, "           probe: %d of %d approvals requested concurrently share their card post with another approval\n", r.probeShared, c.probe)
			for _, p := range r.problems {
				fmt.Fprintf(stdout, "           problem: %s\n", p)
			}
		}
	}
	med := bench.MedianOf[*clickRep]
	okReps := 0
	for _, r := range four {
		if r.correct() {
			okReps++
		}
	}
	baseOK := 0
	for _, r := range one {
		if r.correct() {
			baseOK++
		}
	}
	rate4, rate1 := med(four, (*clickRep).perSec), med(one, (*clickRep).perSec)
	p99_4, p99_1 := med(four, func(r *clickRep) float64 { return r.p(99) }), med(one, func(r *clickRep) float64 { return r.p(99) })
	figs := []bench.Figure{
		{Name: "every approval decided exactly once (4 clickers)", Value: float64(okReps), Target: fmt.Sprintf("%d of %d reps", c.reps, c.reps),
			Baseline: fmt.Sprintf("1 clicker: %d of %d", baseOK, c.reps), Pass: func(v float64) bool { return int(v) == c.reps },
			Note: "approved, one technical + one business decision by different named approvers, exactly one approval.technical_approved and one approval.approved ledger entry each, ica check ok, every click answered 200 within 30 s, no unexpected reply, one card per approval"},
		{Name: "clicks/s (4 clickers)", Value: rate4, Unit: "/s", Baseline: fmt.Sprintf("1 clicker %.0f/s", rate1)},
		{Name: "click latency p50 (4 clickers)", Value: med(four, func(r *clickRep) float64 { return r.p(50) }), Unit: "ms",
			Baseline: fmt.Sprintf("1 clicker %.1f ms", med(one, func(r *clickRep) float64 { return r.p(50) }))},
		{Name: "click latency p99 (4 clickers)", Value: p99_4, Unit: "ms", Target: "< 250 ms", Baseline: fmt.Sprintf("1 clicker %.1f ms", p99_1), Pass: bench.Below(250)},
		{Name: "click latency p99 (1 clicker)", Value: p99_1, Unit: "ms", Target: "< 250 ms", Pass: bench.Below(250)},
	}
	if c.probe > 0 {
		all := append(append([]*clickRep{}, four...), one...)
		figs = append(figs, bench.Figure{Name: "concurrently requested approvals with a card of their own", Value: med(all, func(r *clickRep) float64 { return float64(c.probe - r.probeShared) }),
			Target: fmt.Sprintf("%d of %d", c.probe, c.probe), Pass: func(v float64) bool { return int(v) == c.probe },
			Note: "approvals requested at the same moment must each get a card of their own (the card's pending_post_id is made from the ledger id, the approval id and the outbox message; one made from the creation time made Mattermost return one card for several approvals)"})
	}
	title := fmt.Sprintf("clicks — medians of %d repetition(s): %d approvals x 4 clickers vs %d x 1 clicker, %d approvals in flight",
		c.reps, c.approvals, c.baseline, c.inflight)
	ok := bench.PrintFigures(stdout, title, figs)
	if len(four) > 0 {
		fmt.Fprintf(stdout, "ica check (last 4-clicker rep):\n%s\n", indent(four[len(four)-1].checkOut))
	}
	if !ok {
		fmt.Fprintln(stdout, "RESULT: MISS")
		return 1, nil
	}
	fmt.Fprintln(stdout, "RESULT: PASS")
	return 0, nil
}

type clkApproval struct {
	id, runID, postID string
	techCtx, bizCtx   map[string]any
}

// clicksRep runs one mode against a fresh fake Mattermost, server and ledger.
func clicksRep(ctx context.Context, c clicksConfig, bin, dataDir string, n, clickers int) (*clickRep, error) {
	r := &clickRep{clickers: clickers, approvals: n}
	users := append(append([]string{}, clkTech...), clkBusiness...)
	fm, err := bench.StartMattermost(clkTeam, clkChannel, users)
	if err != nil {
		return nil, err
	}
	defer fm.Close()
	secretHex := bench.RandomToken()
	secret, _ := hex.DecodeString(secretHex)
	srv, err := bench.StartServer(ctx, bench.ServerOptions{Bin: bin, DataDir: dataDir, Env: []string{
		"ICA_MATTERMOST_URL=" + fm.URL, "ICA_MATTERMOST_TOKEN=" + fm.BotToken, "ICA_MATTERMOST_TEAM=" + clkTeam,
		"ICA_APPROVAL_CHANNEL=" + clkChannel, "ICA_PUBLIC_URL=http://127.0.0.1:9/unused-by-the-bench",
		"ICA_TECH_APPROVERS=" + strings.Join(clkTech, ","), "ICA_BUSINESS_APPROVERS=" + strings.Join(clkBusiness, ","),
		"ICA_ACTION_SECRET=" + secretHex}})
	if err != nil {
		return nil, err
	}
	stopped := false
	defer func() {
		if !stopped {
			srv.Kill()
		}
	}()
	conns := max(64, c.inflight*clickers*2)
	client := bench.Client(conns)
	defer client.CloseIdleConnections()
	base, auth := srv.URL(), "Bearer "+srv.Token
	if err := waitReady(ctx, client, base); err != nil {
		return nil, err
	}
	day0 := time.Now()

	// 1. Runs and approvals through the pipeline API.
	aps := make([]clkApproval, n)
	start := time.Now()
	if err := clkParallel(ctx, 32, n, func(i int) error {
		runID := fmt.Sprintf("clk-%d-%06d", clickers, i)
		body := fmt.Appendf(nil, `{"pipeline_name":"payments-%d","run_id":%q,"branch":"refs/heads/main","commit":"%040x",`+
			`"triggered_by":"alice@example.com","url":"https://dev.azure.com/contoso/payments/_build/results?buildId=%d"}`, i%8, runID, i+1, i)
		st, b, _, err := bench.DoJSON(ctx, client, http.MethodPost, base+"/api/v1/runs", auth, body)
		if err != nil || st != http.StatusCreated {
			return fmt.Errorf("start run %s: status %d %s %v", runID, st, clkClip(b), err)
		}
		aps[i].runID = runID
		return nil
	}); err != nil {
		return nil, err
	}
	request := func(runID string) (string, error) {
		st, b, _, err := bench.DoJSON(ctx, client, http.MethodPost, base+"/api/v1/approvals", auth,
			fmt.Appendf(nil, `{"run_id":%q,"deployment_target":"production","estimated_cost":420}`, runID))
		if err != nil || st != http.StatusCreated {
			return "", fmt.Errorf("request approval for %s: status %d %s %v", runID, st, clkClip(b), err)
		}
		var a struct {
			ID string `json:"approval_id"`
		}
		if err := json.Unmarshal(b, &a); err != nil || a.ID == "" {
			return "", fmt.Errorf("approval answer %s: %v", clkClip(b), err)
		}
		return a.ID, nil
	}
	// One at a time: the concurrent case is the probe's (below).
	for i := range aps {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		id, err := request(aps[i].runID)
		if err != nil {
			return nil, err
		}
		aps[i].id = id
	}
	r.setup = time.Since(start)
	// The probe: approvals requested concurrently (32 pipelines at once),
	// never clicked; how many get a card of their own.
	probe := make([]clkApproval, c.probe)
	if err := clkParallel(ctx, 32, len(probe), func(i int) error {
		runID := fmt.Sprintf("probe-%d-%04d", clickers, i)
		body := fmt.Appendf(nil, `{"pipeline_name":"probe","run_id":%q,"branch":"refs/heads/main","commit":"%040x","triggered_by":"alice@example.com"}`, runID, i+1)
		if st, b, _, err := bench.DoJSON(ctx, client, http.MethodPost, base+"/api/v1/runs", auth, body); err != nil || st != http.StatusCreated {
			return fmt.Errorf("start run %s: status %d %s %v", runID, st, clkClip(b), err)
		}
		id, err := request(runID)
		probe[i] = clkApproval{id: id, runID: runID}
		return err
	}); err != nil {
		return nil, err
	}

	// 2. Wait until ICA has posted every card (the outbox delivers them),
	// reading card.post_id through the API, in creation order.
	start = time.Now()
	deadline := start.Add(c.cardTimeout)
	all := make([]*clkApproval, 0, n+len(probe))
	for i := range aps {
		all = append(all, &aps[i])
	}
	for i := range probe {
		all = append(all, &probe[i])
	}
	if err := clkParallel(ctx, 8, len(all), func(i int) error {
		a0 := all[i]
		for {
			st, b, _, err := bench.DoJSON(ctx, client, http.MethodGet, base+"/api/v1/approvals/"+a0.id, auth, nil)
			if err != nil || st != http.StatusOK {
				return fmt.Errorf("get approval %s: status %d %s %v", a0.id, st, clkClip(b), err)
			}
			var a struct {
				Card struct {
					PostID string `json:"post_id"`
				} `json:"card"`
			}
			if err := json.Unmarshal(b, &a); err != nil {
				return err
			}
			if a.Card.PostID != "" {
				a0.postID = a.Card.PostID
				return nil
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("approval %s has no card after %s (outbox still busy?)", a0.id, c.cardTimeout)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(50 * time.Millisecond):
			}
		}
	}); err != nil {
		return nil, err
	}
	r.cardWait = time.Since(start)

	// 3. The buttons' context, copied from the post the fake received (as
	// Mattermost would send it). The business button is on the card only
	// after the technical approval, so its context is made with the same
	// HMAC (ICA_ACTION_SECRET is the bench's), and checked against the
	// technical one's form.
	posts := map[string]string{}
	shared := map[string]int{}
	for _, a := range all {
		shared[a.postID]++
	}
	for _, a := range probe {
		if shared[a.postID] > 1 {
			r.probeShared++
		}
	}
	for i := range aps {
		a := &aps[i]
		if other, dup := posts[a.postID]; dup {
			r.dupCards++
			r.problem("approvals %s and %s share card post %s", other, a.id, a.postID)
		}
		posts[a.postID] = a.id
		p := fm.Post(a.postID)
		if p == nil {
			return nil, fmt.Errorf("the fake has no post %s (card of %s)", a.postID, a.id)
		}
		for _, att := range p.Attachments() {
			for _, act := range att.Actions {
				if act.Integration != nil && act.Integration.Context["action"] == "approve_technical" {
					a.techCtx = act.Integration.Context
				}
			}
		}
		if a.techCtx == nil {
			return nil, fmt.Errorf("card %s of %s has no approve_technical button", a.postID, a.id)
		}
		if a.techCtx["approval_id"] != a.id {
			// A card showing another approval (e.g. a de-duplicated post).
			r.sigMismatch++
			r.problem("card %s of approval %s carries the button of approval %v", a.postID, a.id, a.techCtx["approval_id"])
		}
		// Buttons are signed for this ledger (its id is on the card).
		ledger := fmt.Sprint(p.GetProp("ica_ledger_id"))
		if a.techCtx["sig"] != clkSign(secret, "action", ledger, a.id, "approve_technical") {
			r.sigMismatch++
		}
		a.bizCtx = map[string]any{"approval_id": a.id, "action": "approve_business", "sig": clkSign(secret, "action", ledger, a.id, "approve_business")}
	}
	chID := fm.ChannelID(clkChannel)

	// 4. The clicks.
	var lat bench.Latencies
	var total atomic.Int64
	click := func(sh *bench.Shard, a *clkApproval, user string, actx map[string]any) string {
		// Each click carries its own trigger_id, signed by the fake server as
		// a real one signs it (ICA verifies it and refuses a repeat).
		body, _ := json.Marshal(&model.PostActionIntegrationRequest{UserId: fm.UserIDs[user], UserName: user, ChannelId: chID, ChannelName: clkChannel,
			TeamId: fm.TeamID, TeamName: clkTeam, PostId: a.postID, Type: model.PostActionTypeButton, Context: actx,
			TriggerId: fm.TriggerID(user)})
		st, b, d, err := bench.DoJSON(ctx, client, http.MethodPost, base+"/mattermost/actions", "", body)
		total.Add(1)
		sh.Add(d)
		if err != nil {
			if ctx.Err() == nil {
				if errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "Timeout") {
					r.timeouts.Add(1)
				} else {
					r.failed.Add(1)
				}
				r.problem("click %s by %s: %v", a.id, user, err)
			}
			return ""
		}
		if st != http.StatusOK {
			r.failed.Add(1)
			r.problem("click %s by %s: HTTP %d %s", a.id, user, st, clkClip(b))
			return ""
		}
		var resp model.PostActionIntegrationResponse
		if err := json.Unmarshal(b, &resp); err != nil {
			r.failed.Add(1)
			r.problem("click %s by %s: reply is not JSON: %s", a.id, user, clkClip(b))
			return ""
		}
		t := resp.EphemeralText
		switch {
		case strings.HasPrefix(t, "You gave the technical approval for"):
			r.appliedTech.Add(1)
			return "tech"
		case strings.HasPrefix(t, "You gave the business approval for"):
			r.appliedBiz.Add(1)
			return "biz"
		case strings.Contains(t, "waits for its technical approval"):
			r.refusedOrder.Add(1)
			return "order"
		case strings.Contains(t, "is already") || strings.Contains(t, "waits for its business approval"):
			r.refusedDone.Add(1)
			return "done"
		default:
			r.other.Add(1)
			r.problem("click %s by %s: unexpected reply %q", a.id, user, clkClip([]byte(t)))
			return ""
		}
	}
	next := make(chan int)
	var wg sync.WaitGroup
	start = time.Now()
	for range c.inflight {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sh := lat.Shard()
			defer sh.Done()
			for i := range next {
				a := &aps[i]
				if clickers == 1 {
					click(sh, a, clkTech[0], a.techCtx)
					click(sh, a, clkBusiness[0], a.bizCtx)
					continue
				}
				var cw sync.WaitGroup
				for _, u := range clkTech { // each double-clicks: two requests 0-20 ms apart, not waiting for the first answer
					for k := range 2 {
						cw.Add(1)
						go func() {
							defer cw.Done()
							if k == 1 {
								time.Sleep(time.Duration(rand.IntN(20)) * time.Millisecond)
							}
							own := lat.Shard()
							defer own.Done()
							click(own, a, u, a.techCtx)
						}()
					}
				}
				techDone := make(chan struct{})
				var bw sync.WaitGroup
				for _, u := range clkBusiness { // race; refused while the technical approval is missing, so click again
					bw.Add(1)
					go func() {
						defer bw.Done()
						own := lat.Shard()
						defer own.Done()
						for ctx.Err() == nil {
							finished := false
							select {
							case <-techDone:
								finished = true
							default:
							}
							switch click(own, a, u, a.bizCtx) {
							case "biz", "done", "":
								return
							}
							if finished {
								r.problem("approval %s: business click by %s still refused after the technical clicks ended", a.id, u)
								return
							}
							time.Sleep(time.Duration(20+rand.IntN(20)) * time.Millisecond)
						}
					}()
				}
				cw.Wait()
				close(techDone)
				bw.Wait()
			}
		}()
	}
	for i := range aps {
		if ctx.Err() != nil {
			break
		}
		next <- i
	}
	close(next)
	wg.Wait()
	r.wall = time.Since(start)
	r.clicks = total.Load()
	r.lat = lat.Sorted()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}

	// 5. The outcome through the API.
	var bad atomic.Int64
	if err := clkParallel(ctx, 16, n, func(i int) error {
		st, b, _, err := bench.DoJSON(ctx, client, http.MethodGet, base+"/api/v1/approvals/"+aps[i].id, auth, nil)
		if err != nil || st != http.StatusOK {
			return fmt.Errorf("get approval %s: status %d %v", aps[i].id, st, err)
		}
		var a struct {
			Status              string
			Technical, Business *struct {
				Username string `json:"username"`
				UserID   string `json:"user_id"`
			}
			Rejection, Bypass *json.RawMessage
		}
		if err := json.Unmarshal(b, &a); err != nil {
			return err
		}
		okTech := a.Technical != nil && clkIn(a.Technical.Username, clkTech) && fm.UserIDs[a.Technical.Username] == a.Technical.UserID
		okBiz := a.Business != nil && clkIn(a.Business.Username, clkBusiness) && fm.UserIDs[a.Business.Username] == a.Business.UserID
		if a.Status != "approved" || !okTech || !okBiz || a.Rejection != nil || a.Bypass != nil {
			bad.Add(1)
			r.problem("approval %s ends %s: %s", aps[i].id, a.Status, clkClip(b))
		}
		return nil
	}); err != nil {
		return nil, err
	}
	r.badFinal = int(bad.Load())
	if m, lines, err := scrapeMetrics(ctx, client, srv.MetricsURL()); err == nil {
		r.outboxLeft = m["ica_outbox_depth"]
		for _, l := range lines {
			if strings.HasPrefix(l, "ica_outbox_deliveries_total{") && strings.Contains(l, `destination="mattermost"`) && strings.Contains(l, `outcome="delivered"`) {
				var v float64
				fmt.Sscanf(l[strings.LastIndexByte(l, ' ')+1:], "%g", &v)
				r.deliveries += v
			}
		}
	}
	if r.peakRSS, err = srv.PeakRSS(); err != nil {
		return nil, err
	}
	stopped = true
	if err := srv.Stop(30 * time.Second); err != nil {
		return nil, err
	}
	r.checkOut, r.checkOK = bench.Check(ctx, bin, dataDir)

	// 6. The ledger: exactly one technical_approved and one approved entry per approval.
	counts, err := clkLedgerCounts(ctx, bin, dataDir, day0)
	if err != nil {
		return nil, err
	}
	for i := range aps {
		if t, a := counts["approval.technical_approved"][aps[i].id], counts["approval.approved"][aps[i].id]; t != 1 || a != 1 {
			r.ledgerBad++
			r.problem("approval %s: %d approval.technical_approved and %d approval.approved ledger entries", aps[i].id, t, a)
		}
	}
	return r, nil
}

// clkLedgerCounts exports the ledger as JSON Lines with the real binary and
// counts entries by kind and subject.
func clkLedgerCounts(ctx context.Context, bin, dataDir string, day0 time.Time) (map[string]map[string]int, error) {
	out := filepath.Join(filepath.Dir(dataDir), filepath.Base(dataDir)+"-export.jsonl")
	defer os.Remove(out)
	if _, err := bench.RunMeasured(ctx, nil, bin, "export", "--data-dir", dataDir, "--format", "json",
		"--from", bench.UTCDay(day0.AddDate(0, 0, -1)), "--to", bench.UTCDay(time.Now().AddDate(0, 0, 1)), "--out", out); err != nil {
		return nil, err
	}
	f, err := os.Open(out)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	counts := map[string]map[string]int{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var e struct{ Type, Kind, Subject string }
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return nil, fmt.Errorf("export line: %w", err)
		}
		if e.Type != "entry" {
			continue
		}
		if counts[e.Kind] == nil {
			counts[e.Kind] = map[string]int{}
		}
		counts[e.Kind][e.Subject]++
	}
	return counts, sc.Err()
}

// clkParallel calls fn(0..n-1) on workers goroutines; the first error stops it.
func clkParallel(ctx context.Context, workers, n int, fn func(i int) error) error {
	var next atomic.Int64
	var first error
	var once sync.Once
	var failed atomic.Bool
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !failed.Load() && ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					once.Do(func() { first = err })
					failed.Store(true)
				}
			}
		}()
	}
	wg.Wait()
	if first == nil && ctx.Err() != nil {
		return ctx.Err()
	}
	return first
}

// clkSign is ICA's button signature (bot/card.go sign): HMAC-SHA256 over
// the parts joined by 0x1f, hex.
func clkSign(secret []byte, parts ...string) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(strings.Join(parts, "\x1f")))
	return hex.EncodeToString(m.Sum(nil))
}

func clkIn(s string, set []string) bool {
	for _, v := range set {
		if v == s {
			return true
		}
	}
	return false
}

func clkClip(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 300 {
		return s[:300] + "…"
	}
	return s
}
