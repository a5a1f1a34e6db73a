package pipelines

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Step is one script step of an Azure Pipelines YAML file, after template
// expansion: what it runs, with which environment, under which condition.
type Step struct {
	Stage string
	Job   string
	// Name is the step's name, or its displayName when it has none.
	Name        string
	DisplayName string
	// Script is the script: or bash: body, with ${{ parameters.… }}
	// substituted; $(macros) and $[ runtime expressions ] are left as they are.
	Script    string
	Env       map[string]string
	Condition string
}

// TemplateSteps reads a pipeline or template file and returns its script:
// and bash: steps in order. Template references (stages, jobs and steps
// templates, and extends:) are followed relative to the including file, and
// ${{ parameters.NAME }} is substituted from the caller's parameters or the
// template's defaults, with declared values: and number/boolean types
// checked. Other compile-time expressions (${{ if }}, ${{ each }}, functions)
// are refused, so the ICA templates stay within what this function, and the
// tests built on it, can check.
func TemplateSteps(path string) ([]Step, error) {
	root, err := (&expander{}).load(path, nil, 0)
	if err != nil {
		return nil, err
	}
	var top map[string]any
	if err := root.Decode(&top); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var steps []Step
	switch {
	case top["stages"] != nil:
		for _, st := range asList(top["stages"]) {
			sm := asMap(st)
			for _, j := range asList(sm["jobs"]) {
				steps = appendJob(steps, str(sm["stage"]), asMap(j))
			}
		}
	case top["jobs"] != nil:
		for _, j := range asList(top["jobs"]) {
			steps = appendJob(steps, "", asMap(j))
		}
	default:
		steps = appendSteps(steps, "", "", asList(top["steps"]))
	}
	return steps, nil
}

func appendJob(steps []Step, stage string, job map[string]any) []Step {
	name := str(job["job"])
	if name == "" {
		name = str(job["deployment"])
	}
	steps = appendSteps(steps, stage, name, asList(job["steps"]))
	// Deployment jobs: strategy.runOnce.<hook>.steps and on.failure/success.
	for _, strat := range asMap(job["strategy"]) {
		sm := asMap(strat)
		for _, hook := range []string{"preDeploy", "deploy", "routeTraffic", "postRouteTraffic"} {
			steps = appendSteps(steps, stage, name, asList(asMap(sm[hook])["steps"]))
		}
		on := asMap(sm["on"])
		for _, hook := range []string{"failure", "success"} {
			steps = appendSteps(steps, stage, name, asList(asMap(on[hook])["steps"]))
		}
	}
	return steps
}

func appendSteps(steps []Step, stage, job string, list []any) []Step {
	for _, s := range list {
		sm := asMap(s)
		script := str(sm["script"])
		if script == "" {
			script = str(sm["bash"])
		}
		if script == "" {
			continue
		}
		st := Step{Stage: stage, Job: job, Name: str(sm["name"]), DisplayName: str(sm["displayName"]),
			Script: script, Condition: str(sm["condition"]), Env: map[string]string{}}
		if st.Name == "" {
			st.Name = st.DisplayName
		}
		for k, v := range asMap(sm["env"]) {
			st.Env[k] = str(v)
		}
		steps = append(steps, st)
	}
	return steps
}

func asList(v any) []any {
	l, _ := v.([]any)
	return l
}

func asMap(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

func str(v any) string {
	switch v := v.(type) {
	case nil:
		return ""
	case string:
		return v
	}
	return fmt.Sprint(v)
}

// expander loads YAML files and applies the subset of Azure Pipelines
// template semantics TemplateSteps supports.
type expander struct{}

var (
	paramExpr = regexp.MustCompile(`\$\{\{\s*parameters\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}`)
	wholeExpr = regexp.MustCompile(`^\s*\$\{\{\s*parameters\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}\s*$`)
)

const maxTemplateDepth = 20

// load reads path, binds its parameters to args (a mapping node, or nil),
// substitutes them and follows template references.
func (e *expander) load(path string, args *yaml.Node, depth int) (*yaml.Node, error) {
	if depth > maxTemplateDepth {
		return nil, fmt.Errorf("%s: templates nested deeper than %d", path, maxTemplateDepth)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%s: not a YAML mapping", path)
	}
	root := doc.Content[0]
	params, err := bindParams(root, args)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	deleteKey(root, "parameters")
	if err := subst(root, params); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := e.includes(root, filepath.Dir(path), depth); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return root, nil
}

// bindParams returns the value of each declared parameter: the caller's,
// else the default. Both the list form (name/type/default/values) and the
// old mapping form (name: default) are understood.
func bindParams(root, args *yaml.Node) (map[string]*yaml.Node, error) {
	given := map[string]*yaml.Node{}
	if args != nil {
		if args.Kind != yaml.MappingNode {
			return nil, errors.New("template parameters must be a mapping")
		}
		for i := 0; i+1 < len(args.Content); i += 2 {
			given[args.Content[i].Value] = args.Content[i+1]
		}
	}
	out := map[string]*yaml.Node{}
	decl := mapGet(root, "parameters")
	switch {
	case decl == nil:
	case decl.Kind == yaml.MappingNode:
		for i := 0; i+1 < len(decl.Content); i += 2 {
			out[decl.Content[i].Value] = decl.Content[i+1]
		}
	case decl.Kind == yaml.SequenceNode:
		for _, p := range decl.Content {
			name := mapGet(p, "name")
			if name == nil {
				return nil, errors.New("parameter without a name")
			}
			v := mapGet(p, "default")
			if g, ok := given[name.Value]; ok {
				v = g
			}
			if v == nil {
				return nil, fmt.Errorf("parameter %s has no value and no default", name.Value)
			}
			if err := checkParam(name.Value, p, v); err != nil {
				return nil, err
			}
			out[name.Value] = v
		}
	default:
		return nil, errors.New("parameters must be a list or a mapping")
	}
	for name, v := range given {
		if _, ok := out[name]; !ok {
			if decl != nil && decl.Kind == yaml.SequenceNode {
				return nil, fmt.Errorf("unknown parameter %s", name)
			}
			out[name] = v
		}
	}
	return out, nil
}

// checkParam enforces a declared parameter's type and allowed values, as
// Azure does when the pipeline is compiled.
func checkParam(name string, decl, v *yaml.Node) error {
	typ := ""
	if t := mapGet(decl, "type"); t != nil {
		typ = t.Value
	}
	switch typ {
	case "number":
		if v.Kind != yaml.ScalarNode {
			return fmt.Errorf("parameter %s must be a number", name)
		}
		if _, err := strconv.ParseFloat(v.Value, 64); err != nil {
			return fmt.Errorf("parameter %s: %q is not a number", name, v.Value)
		}
	case "boolean":
		if v.Kind != yaml.ScalarNode || (v.Value != "true" && v.Value != "false") {
			return fmt.Errorf("parameter %s must be true or false", name)
		}
	case "stepList", "jobList", "stageList", "object":
		if typ != "object" && v.Kind != yaml.SequenceNode {
			return fmt.Errorf("parameter %s must be a list", name)
		}
	case "", "string":
		if v.Kind != yaml.ScalarNode {
			return fmt.Errorf("parameter %s must be a string", name)
		}
	}
	if vals := mapGet(decl, "values"); vals != nil && vals.Kind == yaml.SequenceNode {
		if !slices.ContainsFunc(vals.Content, func(n *yaml.Node) bool { return n.Value == v.Value }) {
			var allowed []string
			for _, n := range vals.Content {
				allowed = append(allowed, n.Value)
			}
			return fmt.Errorf("parameter %s: %q is not one of %s", name, v.Value, strings.Join(allowed, ", "))
		}
	}
	return nil
}

// subst replaces ${{ parameters.NAME }} in n. A list item or mapping value
// that is exactly one expression takes the parameter's node (a stepList
// item is spliced into its list); inside a longer string the parameter must
// be a scalar.
func subst(n *yaml.Node, p map[string]*yaml.Node) error {
	switch n.Kind {
	case yaml.AliasNode:
		return errors.New("YAML aliases are not supported by Azure Pipelines")
	case yaml.SequenceNode:
		var out []*yaml.Node
		for _, c := range n.Content {
			if c.Kind == yaml.ScalarNode {
				if m := wholeExpr.FindStringSubmatch(c.Value); m != nil {
					v, ok := p[m[1]]
					if !ok {
						return fmt.Errorf("line %d: unknown parameter %s", c.Line, m[1])
					}
					if v.Kind == yaml.SequenceNode {
						for _, item := range v.Content {
							out = append(out, clone(item))
						}
						continue
					}
					out = append(out, clone(v))
					continue
				}
			}
			if err := subst(c, p); err != nil {
				return err
			}
			out = append(out, c)
		}
		n.Content = out
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if strings.Contains(k.Value, "${{") {
				return fmt.Errorf("line %d: template expression %q as a key is not supported", k.Line, k.Value)
			}
			if v.Kind == yaml.ScalarNode {
				if m := wholeExpr.FindStringSubmatch(v.Value); m != nil {
					pv, ok := p[m[1]]
					if !ok {
						return fmt.Errorf("line %d: unknown parameter %s", v.Line, m[1])
					}
					n.Content[i+1] = clone(pv)
					continue
				}
			}
			if err := subst(v, p); err != nil {
				return err
			}
		}
	case yaml.ScalarNode:
		var err error
		n.Value = paramExpr.ReplaceAllStringFunc(n.Value, func(s string) string {
			name := paramExpr.FindStringSubmatch(s)[1]
			v, ok := p[name]
			if !ok {
				err = fmt.Errorf("line %d: unknown parameter %s", n.Line, name)
				return s
			}
			if v.Kind != yaml.ScalarNode {
				err = fmt.Errorf("line %d: parameter %s is not a scalar", n.Line, name)
				return s
			}
			return v.Value
		})
		if err != nil {
			return err
		}
		if strings.Contains(n.Value, "${{") {
			return fmt.Errorf("line %d: unsupported template expression in %q", n.Line, n.Value)
		}
		if n.Tag == "!!int" || n.Tag == "!!float" || n.Tag == "!!bool" {
			n.Tag = ""
		}
	}
	return nil
}

// includes follows template references in stages:, jobs: and steps: lists
// and a top-level extends:.
func (e *expander) includes(n *yaml.Node, dir string, depth int) error {
	if n.Kind == yaml.SequenceNode {
		for _, c := range n.Content {
			if err := e.includes(c, dir, depth); err != nil {
				return err
			}
		}
		return nil
	}
	if n.Kind != yaml.MappingNode {
		return nil
	}
	if ext := mapGet(n, "extends"); ext != nil {
		t := mapGet(ext, "template")
		if t == nil {
			return errors.New("extends: without template")
		}
		inc, err := e.load(filepath.Join(dir, t.Value), mapGet(ext, "parameters"), depth+1)
		if err != nil {
			return err
		}
		deleteKey(n, "extends")
		for i := 0; i+1 < len(inc.Content); i += 2 {
			deleteKey(n, inc.Content[i].Value)
			n.Content = append(n.Content, inc.Content[i], inc.Content[i+1])
		}
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		key, v := n.Content[i].Value, n.Content[i+1]
		if (key == "stages" || key == "jobs" || key == "steps") && v.Kind == yaml.SequenceNode {
			var out []*yaml.Node
			for _, item := range v.Content {
				t := mapGet(item, "template")
				if t == nil {
					out = append(out, item)
					continue
				}
				inc, err := e.load(filepath.Join(dir, t.Value), mapGet(item, "parameters"), depth+1)
				if err != nil {
					return err
				}
				list := mapGet(inc, key)
				if list == nil || list.Kind != yaml.SequenceNode {
					return fmt.Errorf("template %s has no %s: list", t.Value, key)
				}
				out = append(out, list.Content...)
			}
			v.Content = out
		}
		if err := e.includes(v, dir, depth); err != nil {
			return err
		}
	}
	return nil
}

func mapGet(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

func deleteKey(n *yaml.Node, key string) {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			n.Content = append(n.Content[:i], n.Content[i+2:]...)
			return
		}
	}
}

func clone(n *yaml.Node) *yaml.Node {
	c := *n
	if n.Content != nil {
		c.Content = make([]*yaml.Node, len(n.Content))
		for i, k := range n.Content {
			c.Content[i] = clone(k)
		}
	}
	return &c
}
