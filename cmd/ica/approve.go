package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// cmdApprove decides an approval through the API with the person's own
// Entra ID token: `ica approve A-17` gives the step the approval waits for,
// `--reject --reason …` rejects it.
func cmdApprove(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("approve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("url", getenv("ICA_URL"), "ICA's URL (ICA_URL)")
	reject := fs.Bool("reject", false, "reject instead of approve (needs --reason)")
	reason := fs.String("reason", "", "why the deployment must not happen (with --reject)")
	comment := fs.String("comment", "", "a comment recorded with the approval")
	notBefore := fs.String("not-before", "", "HH:MM in the target's time zone: a business approval that takes effect then")
	fs.Usage = func() {
		fmt.Fprintln(stderr, `usage: ica approve APPROVAL_ID [--reject --reason TEXT] [--comment TEXT] [--not-before HH:MM] [--url URL]

Approves (or rejects) the step an approval waits for, as you: your own Entra ID
access token for ICA is read from ICA_USER_TOKEN, for example
  export ICA_USER_TOKEN=$(az account get-access-token --resource <ICA's app id URI> --query accessToken -o tsv)
The same rules apply as on the card: you must be named in the step's approver
list as entra:<your object id>, you cannot approve what you requested, and one
person never gives both approvals. The ledger records the decision as via: api.`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(reorderWithBools(args, "reject")); err != nil {
		return usageErrorf("%v", err)
	}
	if fs.NArg() != 1 {
		return usageErrorf("ica approve APPROVAL_ID [--reject --reason TEXT] [--comment TEXT] [--not-before HH:MM]")
	}
	if *url == "" {
		return usageErrorf("where is ICA? pass --url or set ICA_URL")
	}
	token := strings.TrimSpace(getenv("ICA_USER_TOKEN"))
	if token == "" {
		return errors.New("no token: set ICA_USER_TOKEN to your Entra ID access token for ICA (az account get-access-token --resource <ICA's app id URI>)")
	}
	body := map[string]string{"action": "approve"}
	switch {
	case *reject:
		if strings.TrimSpace(*reason) == "" {
			return usageErrorf("--reject needs --reason")
		}
		body["action"], body["reason"] = "reject", *reason
	case *reason != "":
		return usageErrorf("--reason goes with --reject; an approval takes --comment")
	}
	if *comment != "" {
		body["comment"] = *comment
	}
	if *notBefore != "" {
		body["not_before"] = *notBefore
	}
	raw, _ := json.Marshal(body)
	id := fs.Arg(0)
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(*url, "/")+"/api/v1/approvals/"+id+"/decisions", bytes.NewReader(raw))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("ICA at %s: %w", *url, err)
	}
	defer res.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if res.StatusCode != http.StatusOK {
		var e struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		if json.Unmarshal(answer, &e) == nil && e.Error.Message != "" {
			return fmt.Errorf("%s: %s (%d %s)", id, e.Error.Message, res.StatusCode, e.Error.Code)
		}
		return fmt.Errorf("%s: ICA answered %s", id, res.Status)
	}
	var a struct {
		ID     string `json:"approval_id"`
		Status string `json:"status"`
	}
	_ = json.Unmarshal(answer, &a)
	verb := "approval recorded"
	if *reject {
		verb = "rejection recorded"
	}
	fmt.Fprintf(stdout, "%s: %s; it is now %s\n", a.ID, verb, strings.ReplaceAll(a.Status, "_", " "))
	return nil
}
