package kernel

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"
)

// kmod's modprobe, modinfo and libkmod read the binary indexes
// modules.dep.bin, modules.alias.bin and modules.builtin.bin only (there is
// no fallback to the text files): a container that mounts the node's
// /lib/modules and runs its own modprobe (CNI plugins such as Calico's and
// Cilium's do) finds no module without them. The agent reads the text
// files; the build writes both, the binary ones derived from the text.
//
// The format is module-init-tools' and kmod's (depmod's index_write): a
// path-compressed trie of 7-bit ASCII keys, big-endian 32-bit integers,
//
//	magic 0xB007F457, version 0x00020001, root node offset
//	node: [prefix NUL] [first last child_offset×(last-first+1)] [count (priority value NUL)×count]
//
// where a node offset's top bits say which parts the node has, and nodes
// are written children first.
const (
	binIndexMagic   = 0xB007F457
	binIndexVersion = 0x00020001
	nodePrefix      = 0x80000000
	nodeValues      = 0x40000000
	nodeChilds      = 0x20000000
	nodeOffsetMask  = 0x0FFFFFFF
)

type binValue struct {
	priority uint32
	value    string
}

type trieNode struct {
	prefix   string
	children [128]*trieNode
	first    int // range of children present; first > last when none
	last     int
	values   []binValue
}

func newTrieNode(prefix string) *trieNode { return &trieNode{prefix: prefix, first: 128, last: -1} }

func checkASCII(s string) error {
	for i := 0; i < len(s); i++ {
		if s[i] >= 128 {
			return fmt.Errorf("%q: the module index holds 7-bit ASCII only", s)
		}
	}
	return nil
}

// addValue keeps values ordered by priority, a new value going before
// those of equal priority, as depmod does.
func (n *trieNode) addValue(v binValue) {
	i := 0
	for i < len(n.values) && n.values[i].priority < v.priority {
		i++
	}
	n.values = append(n.values, binValue{})
	copy(n.values[i+1:], n.values[i:])
	n.values[i] = v
}

func (n *trieNode) setChild(c byte, child *trieNode) {
	n.children[c] = child
	n.first = min(n.first, int(c))
	n.last = max(n.last, int(c))
}

// insert adds value under key, splitting nodes whose prefix differs.
func (n *trieNode) insert(key string, v binValue) error {
	if err := checkASCII(key); err != nil {
		return err
	}
	if err := checkASCII(v.value); err != nil {
		return err
	}
	i := 0
	for {
		j := 0
		for ; j < len(n.prefix); j++ {
			if i+j >= len(key) || key[i+j] != n.prefix[j] {
				// n keeps prefix[:j]; a child at prefix[j] takes the rest.
				rest := &trieNode{prefix: n.prefix[j+1:], children: n.children, first: n.first, last: n.last, values: n.values}
				c := n.prefix[j]
				*n = *newTrieNode(n.prefix[:j])
				n.setChild(c, rest)
				break
			}
		}
		i += j
		if i == len(key) {
			n.addValue(v)
			return nil
		}
		c := key[i]
		child := n.children[c]
		if child == nil {
			child = newTrieNode(key[i+1:])
			child.addValue(v)
			n.setChild(c, child)
			return nil
		}
		n = child
		i++
	}
}

// write appends the node (children first) and returns its offset with flags.
func (n *trieNode) write(b *bytes.Buffer) (uint32, error) {
	var childOffs []uint32
	if n.first <= n.last {
		for c := n.first; c <= n.last; c++ {
			var off uint32
			if ch := n.children[c]; ch != nil {
				o, err := ch.write(b)
				if err != nil {
					return 0, err
				}
				off = o
			}
			childOffs = append(childOffs, off)
		}
	}
	offset := uint32(b.Len())
	if offset > nodeOffsetMask {
		return 0, fmt.Errorf("module index larger than %d bytes", nodeOffsetMask)
	}
	if n.prefix != "" {
		b.WriteString(n.prefix)
		b.WriteByte(0)
		offset |= nodePrefix
	}
	if len(childOffs) > 0 {
		b.WriteByte(byte(n.first))
		b.WriteByte(byte(n.last))
		for _, o := range childOffs {
			_ = binary.Write(b, binary.BigEndian, o)
		}
		offset |= nodeChilds
	}
	if len(n.values) > 0 {
		_ = binary.Write(b, binary.BigEndian, uint32(len(n.values)))
		for _, v := range n.values {
			_ = binary.Write(b, binary.BigEndian, v.priority)
			b.WriteString(v.value)
			b.WriteByte(0)
		}
		offset |= nodeValues
	}
	return offset, nil
}

func (n *trieNode) bytes() ([]byte, error) {
	var b bytes.Buffer
	_ = binary.Write(&b, binary.BigEndian, uint32(binIndexMagic))
	_ = binary.Write(&b, binary.BigEndian, uint32(binIndexVersion))
	_ = binary.Write(&b, binary.BigEndian, uint32(0)) // the root's offset, once known
	root, err := n.write(&b)
	if err != nil {
		return nil, err
	}
	out := b.Bytes()
	binary.BigEndian.PutUint32(out[8:], root)
	return out, nil
}

// aliasKey is an alias pattern as depmod indexes it: "-" read as "_"
// except inside [] ranges; ok is false for an unmatched bracket, which
// depmod leaves out.
func aliasKey(a string) (string, bool) {
	var b strings.Builder
	for i := 0; i < len(a); i++ {
		switch c := a[i]; c {
		case '-':
			b.WriteByte('_')
		case ']':
			return "", false
		case '[':
			end := strings.IndexByte(a[i:], ']')
			if end < 0 {
				return "", false
			}
			b.WriteString(a[i : i+end+1])
			i += end
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), true
}

func lines(data []byte) []string {
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64*1024), 16*1024*1024)
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return out
}

// BinaryIndexes renders modules.dep.bin, modules.alias.bin and
// modules.builtin.bin from the text files in files (modules.dep,
// modules.alias, modules.builtin), as depmod would write them for the
// same modules.
func BinaryIndexes(files map[string][]byte) (map[string][]byte, error) {
	dep, alias, builtin := newTrieNode(""), newTrieNode(""), newTrieNode("")
	order := map[string]uint32{}
	for i, l := range lines(files["modules.dep"]) {
		p, _, ok := strings.Cut(l, ":")
		if !ok {
			return nil, fmt.Errorf("modules.dep line %q has no colon", l)
		}
		name := nameFromPath(p)
		order[name] = uint32(i)
		if err := dep.insert(name, binValue{uint32(i), l}); err != nil {
			return nil, fmt.Errorf("modules.dep: %w", err)
		}
	}
	for _, l := range lines(files["modules.alias"]) {
		f := strings.Fields(l)
		if len(f) != 3 || f[0] != "alias" {
			return nil, fmt.Errorf("modules.alias line %q is not \"alias PATTERN MODULE\"", l)
		}
		key, ok := aliasKey(f[1])
		if !ok {
			continue
		}
		if err := alias.insert(key, binValue{order[f[2]], f[2]}); err != nil {
			return nil, fmt.Errorf("modules.alias: %w", err)
		}
	}
	for _, l := range lines(files["modules.builtin"]) {
		if err := builtin.insert(nameFromPath(l), binValue{0, ""}); err != nil {
			return nil, fmt.Errorf("modules.builtin: %w", err)
		}
	}
	out := map[string][]byte{}
	for name, t := range map[string]*trieNode{"modules.dep.bin": dep, "modules.alias.bin": alias, "modules.builtin.bin": builtin} {
		b, err := t.bytes()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		out[name] = b
	}
	return out, nil
}
