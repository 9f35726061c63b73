package proto

import (
	"reflect"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
)

// decodeFlat decodes the frames a rendezvous relays most — offers,
// answers, candidates, opens, byes: one object whose values are strings
// (and the version number) — in a single pass with no copy of the frame,
// where encoding/json's strict decoder scans it twice and copies it into
// its own buffer first. It is a strict subset: any frame it is not sure of
// (another kind of value, a key it does not know exactly as written, a
// key twice, a \u escape, bytes that are not UTF-8, anything after the
// object) gives nil, and decodeFast goes on the usual way. The fuzz test
// holds it to giving what the strict decoder gives.
func decodeFlat(b []byte, typ string, m Message) bool {
	fields := flatFieldsOf(typ)
	if fields == nil {
		return false
	}
	v := reflect.ValueOf(m).Elem()
	var seen uint64
	p := flatParser{b: b}
	p.ws()
	if !p.eat('{') {
		return false
	}
	for first := true; ; first = false {
		p.ws()
		if first && p.peek() == '}' {
			return false // no type: the strict path says so
		}
		key, ok := p.str()
		if !ok {
			return false
		}
		f, ok := fields[key]
		if !ok || seen&(1<<f.bit) != 0 {
			return false
		}
		seen |= 1 << f.bit
		p.ws()
		if !p.eat(':') {
			return false
		}
		p.ws()
		if !p.value(v.FieldByIndex(f.index), f.kind) {
			return false
		}
		p.ws()
		if p.eat('}') {
			break
		}
		if !p.eat(',') {
			return false
		}
	}
	p.ws()
	return p.i == len(b)
}

type flatField struct {
	index []int
	kind  flatKind
	bit   uint
}

type flatKind int

const (
	flatString  flatKind = iota
	flatVersion          // the header's int
	flatStringPtr
	flatUint16Ptr
	flatBoolPtr
)

// flatFieldsOf is, for a message type, its fields decodeFlat fills (the
// version; strings; pointers to strings, uint16s and bools) by JSON name;
// nil for a type with more than 64 of them.
func flatFieldsOf(typ string) map[string]flatField {
	flatOnce.Do(buildFlatFields)
	return flatByType[typ]
}

// Built on first use, not at init: a package-level initializer would keep
// all of this in the agent's binary, which never decodes this way.
var (
	flatOnce   sync.Once
	flatByType map[string]map[string]flatField
)

func buildFlatFields() {
	out := map[string]map[string]flatField{}
	for typ, newMsg := range constructors {
		fields := map[string]flatField{}
		var walk func(t reflect.Type, at []int)
		walk = func(t reflect.Type, at []int) {
			for i := range t.NumField() {
				sf := t.Field(i)
				index := append(append([]int{}, at...), i)
				if sf.Anonymous && sf.Type.Kind() == reflect.Struct {
					walk(sf.Type, index)
					continue
				}
				name, _, _ := strings.Cut(sf.Tag.Get("json"), ",")
				if !sf.IsExported() || name == "" || name == "-" {
					continue
				}
				kind, ok := flatKind(-1), false
				switch t := sf.Type; {
				case t.Kind() == reflect.String:
					kind, ok = flatString, true
				case t.Kind() == reflect.Int && name == "v":
					kind, ok = flatVersion, true
				case t.Kind() == reflect.Pointer && t.Elem().Kind() == reflect.String:
					kind, ok = flatStringPtr, true
				case t.Kind() == reflect.Pointer && t.Elem().Kind() == reflect.Uint16:
					kind, ok = flatUint16Ptr, true
				case t.Kind() == reflect.Pointer && t.Elem().Kind() == reflect.Bool:
					kind, ok = flatBoolPtr, true
				}
				if ok {
					fields[name] = flatField{index: index, kind: kind, bit: uint(len(fields))}
				}
			}
		}
		walk(reflect.TypeOf(newMsg()).Elem(), nil)
		if len(fields) <= 64 {
			out[typ] = fields
		}
	}
	flatByType = out
}

// value reads one value of kind into dst.
func (p *flatParser) value(dst reflect.Value, kind flatKind) bool {
	switch kind {
	case flatVersion:
		n, ok := p.int()
		dst.SetInt(int64(n))
		return ok
	case flatUint16Ptr:
		n, ok := p.int()
		if !ok || n > 0xffff {
			return false
		}
		u := uint16(n)
		dst.Set(reflect.ValueOf(&u))
		return true
	case flatBoolPtr:
		var b bool
		switch {
		case p.word("true"):
			b = true
		case p.word("false"):
		default:
			return false
		}
		dst.Set(reflect.ValueOf(&b))
		return true
	}
	s, ok := p.str()
	if !ok {
		return false
	}
	if kind == flatStringPtr {
		dst.Set(reflect.ValueOf(&s))
	} else {
		dst.SetString(s)
	}
	return true
}

// word reads a literal.
func (p *flatParser) word(w string) bool {
	if strings.HasPrefix(string(p.b[p.i:min(len(p.b), p.i+len(w))]), w) {
		p.i += len(w)
		return true
	}
	return false
}

// flatParser reads the strict subset of JSON decodeFlat takes.
type flatParser struct {
	b []byte
	i int
}

func (p *flatParser) peek() byte {
	if p.i < len(p.b) {
		return p.b[p.i]
	}
	return 0
}

func (p *flatParser) ws() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *flatParser) eat(c byte) bool {
	if p.peek() == c {
		p.i++
		return true
	}
	return false
}

// int reads a small non-negative integer as JSON writes it.
func (p *flatParser) int() (int, bool) {
	start := p.i
	for p.i < len(p.b) && p.b[p.i] >= '0' && p.b[p.i] <= '9' {
		p.i++
	}
	digits := p.b[start:p.i]
	if len(digits) == 0 || len(digits) > 9 || (digits[0] == '0' && len(digits) > 1) {
		return 0, false
	}
	if c := p.peek(); c == '.' || c == 'e' || c == 'E' {
		return 0, false
	}
	n, err := strconv.Atoi(string(digits))
	return n, err == nil
}

// str reads a string: plain bytes, valid UTF-8, and the short escapes.
func (p *flatParser) str() (string, bool) {
	if !p.eat('"') {
		return "", false
	}
	start := p.i
	ascii := true
	for p.i < len(p.b) {
		c := p.b[p.i]
		switch {
		case c == '"':
			s := p.b[start:p.i]
			p.i++
			if !ascii && !utf8.Valid(s) {
				return "", false
			}
			return string(s), true
		case c == '\\':
			return p.escaped(start, ascii)
		case c < 0x20:
			return "", false
		case c >= 0x80:
			ascii = false
		}
		p.i++
	}
	return "", false
}

// escaped finishes a string that has escapes, from its start; p.i is at
// the first backslash.
func (p *flatParser) escaped(start int, ascii bool) (string, bool) {
	var out strings.Builder
	out.Grow(len(p.b) - start) // no string is longer unescaped
	out.Write(p.b[start:p.i])
	for p.i < len(p.b) {
		switch c := p.b[p.i]; {
		case c == '"':
			p.i++
			if !ascii && !utf8.ValidString(out.String()) {
				return "", false
			}
			return out.String(), true
		case c < 0x20:
			return "", false
		case c == '\\':
			if p.i+1 >= len(p.b) {
				return "", false
			}
			var r byte
			switch p.b[p.i+1] {
			case '"', '\\', '/':
				r = p.b[p.i+1]
			case 'b':
				r = '\b'
			case 'f':
				r = '\f'
			case 'n':
				r = '\n'
			case 'r':
				r = '\r'
			case 't':
				r = '\t'
			default:
				return "", false // \u and anything else: the strict path
			}
			out.WriteByte(r)
			p.i += 2
			continue
		}
		// A plain run, up to the next quote, backslash or control byte.
		run := p.i
		for p.i < len(p.b) {
			c := p.b[p.i]
			if c == '"' || c == '\\' || c < 0x20 {
				break
			}
			if c >= 0x80 {
				ascii = false
			}
			p.i++
		}
		out.Write(p.b[run:p.i])
	}
	return "", false
}
