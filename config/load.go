package config

import (
	"fmt"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Load reads a config file, expanding ${VAR} from the environment.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(path, data, os.LookupEnv)
}

// Parse decodes and checks a config. The error, if any, is Errors listing
// every problem; the config is returned too, as far as it could be read.
func Parse(file string, data []byte, lookupEnv func(string) (string, bool)) (*Config, error) {
	cfg := &Config{File: file}
	p := &parser{cfg: cfg, env: lookupEnv, pos: map[string]Pos{}, text: map[string]Pos{}, lines: strings.Split(string(data), "\n")}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		line := 1
		if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
			line, _ = strconv.Atoi(m[1])
		}
		msg := strings.TrimPrefix(yamlLine.ReplaceAllString(err.Error(), ""), "yaml: ")
		return nil, Errors{{File: file, Line: line, Col: 1, Path: "(file)", Msg: "invalid YAML: " + msg}}
	}
	if len(root.Content) > 0 {
		p.decode(root.Content[0], reflect.ValueOf(cfg).Elem(), "")
	}
	p.placeDestinations()
	Defaults(cfg)
	p.validate()
	if len(p.errs) > 0 {
		p.errs.Sort()
		return cfg, p.errs
	}
	return cfg, nil
}

var yamlLine = regexp.MustCompile(`line (\d+): `)

type parser struct {
	cfg  *Config
	env  func(string) (string, bool)
	pos  map[string]Pos // full path -> position of the value
	text map[string]Pos // full path -> where a scalar's text starts
	// lines is the source, to find where a block scalar's text starts.
	lines []string
	errs  Errors
}

func (p *parser) errAt(n *yaml.Node, path, format string, args ...any) {
	if path == "" {
		path = "(file)"
	}
	p.errs = append(p.errs, p.cfg.Errorf(Pos{n.Line, n.Column}, path, format, args...))
}

// errPath reports at a path's recorded position, or its closest parent's.
// A path that already has an error gets no second one (an unset variable
// makes an empty value, which is not worth saying again).
func (p *parser) errPath(path, format string, args ...any) {
	for _, e := range p.errs {
		if e.Path == path {
			return
		}
	}
	p.errs = append(p.errs, p.cfg.Errorf(p.at(path), path, format, args...))
}

func (p *parser) at(path string) Pos {
	for q := path; q != ""; q = parentPath(q) {
		if pos, ok := p.pos[q]; ok {
			return pos
		}
	}
	return Pos{1, 1}
}

func parentPath(path string) string {
	i := strings.LastIndexAny(path, ".[")
	if i < 0 {
		return ""
	}
	return path[:i]
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

var unmarshaler = reflect.TypeFor[yaml.Unmarshaler]()

// scalarForm is a mapping type that may also be written as one word
// ("breaker: off"); as a mapping it is decoded key by key, unknown keys
// reported.
var scalarForm = reflect.TypeFor[interface{ FromScalar(string) error }]()

// decode walks a node into v, reporting unknown keys and type errors.
func (p *parser) decode(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	p.pos[path] = Pos{n.Line, n.Column}
	if n.Kind == yaml.ScalarNode {
		p.text[path] = p.textStart(n)
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return // an empty value leaves the default
	}
	if n.Kind == yaml.ScalarNode && v.CanAddr() && v.Addr().Type().Implements(scalarForm) {
		if c, ok := p.expanded(n, path); ok {
			if err := v.Addr().Interface().(interface{ FromScalar(string) error }).FromScalar(c.Value); err != nil {
				p.errAt(n, path, "%v", err)
			}
		}
		return
	}
	if v.CanAddr() && v.Addr().Type().Implements(unmarshaler) {
		p.decodeLeaf(n, v, path)
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		p.decodeStruct(n, v, path)
	case reflect.Slice:
		p.decodeSlice(n, v, path)
	case reflect.Map:
		p.decodeMap(n, v, path)
	case reflect.Pointer: // an optional value: set only when given
		e := reflect.New(v.Type().Elem())
		p.decode(n, e.Elem(), path)
		v.Set(e)
	default:
		p.decodeScalar(n, v, path)
	}
}

func (p *parser) decodeStruct(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		p.errAt(n, path, "expected a mapping of keys, got %s", describe(n))
		return
	}
	fields := map[string]int{}
	for i := 0; i < v.NumField(); i++ {
		tag := strings.Split(v.Type().Field(i).Tag.Get("yaml"), ",")[0]
		if tag != "" && tag != "-" {
			fields[tag] = i
		}
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		kp := join(path, k.Value)
		idx, ok := fields[k.Value]
		switch {
		case k.Kind != yaml.ScalarNode:
			p.errAt(k, path, "a key must be a plain name, got %s", describe(k))
		case !ok:
			p.errAt(k, kp, "unknown key %q", k.Value)
		case seen[k.Value]:
			p.errAt(k, kp, "key %q given twice", k.Value)
		default:
			seen[k.Value] = true
			p.decode(val, v.Field(idx), kp)
		}
	}
}

func (p *parser) decodeSlice(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.SequenceNode {
		p.errAt(n, path, "expected a list, got %s", describe(n))
		return
	}
	out := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, item := range n.Content {
		p.decode(item, out.Index(i), fmt.Sprintf("%s[%d]", path, i))
	}
	v.Set(out)
}

func (p *parser) decodeMap(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		p.errAt(n, path, "expected a mapping, got %s", describe(n))
		return
	}
	out := reflect.MakeMap(v.Type())
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		kp := join(path, k.Value)
		if k.Kind != yaml.ScalarNode {
			p.errAt(k, path, "a key must be a plain name, got %s", describe(k))
			continue
		}
		if out.MapIndex(reflect.ValueOf(k.Value)).IsValid() {
			p.errAt(k, kp, "key %q given twice", k.Value)
			continue
		}
		elem := reflect.New(v.Type().Elem()).Elem()
		p.decode(val, elem, kp)
		out.SetMapIndex(reflect.ValueOf(k.Value), elem)
	}
	v.Set(out)
}

// textStart is where a scalar's text begins: after its opening quote, or at
// the indentation of a block scalar's first non-blank content line.
func (p *parser) textStart(n *yaml.Node) Pos {
	switch {
	case n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) != 0:
		return Pos{n.Line, n.Column + 1}
	case n.Style&(yaml.LiteralStyle|yaml.FoldedStyle) != 0:
		for i := n.Line; i < len(p.lines); i++ { // p.lines[i] is line i+1
			line := strings.TrimRight(p.lines[i], "\r")
			if text := strings.TrimLeft(line, " "); text != "" {
				return Pos{i + 1, len(line) - len(text) + 1}
			}
		}
	}
	return Pos{n.Line, n.Column}
}

// expanded returns a copy of a scalar node with ${VAR} replaced.
func (p *parser) expanded(n *yaml.Node, path string) (*yaml.Node, bool) {
	val, missing := expandEnv(n.Value, p.env)
	for _, name := range missing {
		p.errAt(n, path, "environment variable %s is not set", name)
	}
	c := *n
	c.Value = val
	return &c, len(missing) == 0
}

func (p *parser) decodeLeaf(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.ScalarNode {
		p.errAt(n, path, "expected a single value, got %s", describe(n))
		return
	}
	c, ok := p.expanded(n, path)
	if !ok {
		return
	}
	if err := v.Addr().Interface().(yaml.Unmarshaler).UnmarshalYAML(c); err != nil {
		p.errAt(n, path, "%v", err)
	}
}

func (p *parser) decodeScalar(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.ScalarNode {
		p.errAt(n, path, "expected a single value, got %s", describe(n))
		return
	}
	c, ok := p.expanded(n, path)
	if !ok {
		return
	}
	var err error
	switch v.Kind() {
	case reflect.String:
		v.SetString(c.Value)
	case reflect.Bool:
		var b bool
		if err = c.Decode(&b); err != nil {
			err = fmt.Errorf("expected true or false, got %q", c.Value)
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int64:
		var i int64
		if i, err = strconv.ParseInt(c.Value, 10, 64); err != nil {
			err = fmt.Errorf("expected a whole number, got %q", c.Value)
		}
		v.SetInt(i)
	case reflect.Float64:
		var f float64
		if f, err = strconv.ParseFloat(c.Value, 64); err != nil {
			err = fmt.Errorf("expected a number, got %q", c.Value)
		}
		v.SetFloat(f)
	default:
		err = fmt.Errorf("unsupported type %s", v.Type())
	}
	if err != nil {
		p.errAt(n, path, "%v", err)
	}
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	default:
		return strconv.Quote(n.Value)
	}
}

// placeDestinations copies each destination's positions into it, by path
// relative to the destination.
func (p *parser) placeDestinations() {
	for i := range p.cfg.Destinations {
		d := &p.cfg.Destinations[i]
		prefix := fmt.Sprintf("destinations[%d]", i)
		d.At = p.at(prefix)
		d.Pos, d.Text = map[string]Pos{}, map[string]Pos{}
		for path, pos := range p.pos {
			if rel, ok := strings.CutPrefix(path, prefix+"."); ok {
				d.Pos[rel] = pos
			}
		}
		for path, pos := range p.text {
			if rel, ok := strings.CutPrefix(path, prefix+"."); ok {
				d.Text[rel] = pos
			}
		}
	}
	for i := range p.cfg.Activities {
		p.cfg.Activities[i].Pos = p.at(fmt.Sprintf("activities[%d]", i))
	}
	o := &p.cfg.Sources.Ortto
	o.Pos = map[string]Pos{}
	for path, pos := range p.pos {
		if rel, ok := strings.CutPrefix(path, "sources.ortto."); ok {
			o.Pos[rel] = pos
		}
	}
}

var envRef = regexp.MustCompile(`\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}`)

// expandEnv replaces ${VAR} and ${VAR:-default}; $$ is a literal $. It
// returns the names of variables that are not set and have no default.
func expandEnv(s string, lookup func(string) (string, bool)) (string, []string) {
	if !strings.Contains(s, "$") {
		return s, nil
	}
	var missing []string
	out := envRef.ReplaceAllStringFunc(s, func(ref string) string {
		if ref == "$$" {
			return "$"
		}
		m := envRef.FindStringSubmatch(ref)
		if v, ok := lookup(m[1]); ok {
			return v
		}
		if m[2] != "" {
			return m[3]
		}
		missing = append(missing, m[1])
		return ""
	})
	return out, missing
}
