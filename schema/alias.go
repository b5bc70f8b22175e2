package schema

import (
	"fmt"

	"gopkg.in/yaml.v3"
)

// maxAliasValues bounds how many values aliases (*anchor) add to a
// document, on top of those it holds itself. An alias stands for its
// anchor's whole value, so a small file can stand for a huge document: an
// interface of 300 addresses anchored once and aliased 3000 times is
// 900,000 values from 31 KB, and anchors that alias each other grow
// exponentially ("billion laughs"). Decoding and validating all of that
// takes seconds and hundreds of megabytes, which the agent cannot spend: it
// is PID 1 on a small memory budget, and reads its config again every few
// seconds while it is invalid. Sharing a DNS list or a mirror's endpoints
// between a few entries stays far below the bound.
const maxAliasValues = 10_000

// manyValues is where expanded sizes stop counting, so that nested anchors
// cannot overflow them.
const manyValues = 1 << 50

// aliasProblem measures what aliases add to the document under root: nil
// when it is at most maxAliasValues, else the error, which names the alias
// that adds the most. An alias inside its own anchor, which would never end,
// is an error too. The work is bounded by the document's own size: each
// anchor's expanded size is computed once.
func aliasProblem(root *yaml.Node) *FieldError {
	a := &aliasSizes{size: map[*yaml.Node]int{}, busy: map[*yaml.Node]bool{}}
	total := a.expanded(root)
	if c := a.cycle; c != nil {
		return &FieldError{Line: c.Line, Msg: fmt.Sprintf("the alias *%s is inside its own anchor (&%s, line %d), so it would never end: write the value out instead", c.Value, c.Value, c.Alias.Line)}
	}
	uses := map[*yaml.Node][]*yaml.Node{} // anchor → its aliases, in source order
	own := ownValues(root, uses)
	if total-own <= maxAliasValues {
		return nil
	}
	var worst *yaml.Node // the anchor whose aliases add the most
	for anchor, aliases := range uses {
		if worst == nil {
			worst = anchor
			continue
		}
		got, was := added(a, anchor, aliases), added(a, worst, uses[worst])
		// Ties go to the first anchor in the file, so that the message
		// does not change from run to run.
		if got > was || got == was && (anchor.Line < worst.Line || anchor.Line == worst.Line && anchor.Column < worst.Column) {
			worst = anchor
		}
	}
	first := uses[worst][0]
	return &FieldError{Line: first.Line, Msg: fmt.Sprintf(
		"aliases expand this document by %s values, more than the %d allowed: *%s (anchored on line %d) stands for %s values and is used %d times, first here: write the values out where they are needed instead of aliasing them",
		count(total-own), maxAliasValues, first.Value, worst.Line, count(a.size[worst]), len(uses[worst]))}
}

// added is how many values the aliases of anchor stand for.
func added(a *aliasSizes, anchor *yaml.Node, aliases []*yaml.Node) int {
	return min(a.size[anchor]*min(len(aliases), manyValues/max(a.size[anchor], 1)), manyValues)
}

// count writes a number of values, which may have stopped counting.
func count(n int) string {
	if n >= manyValues {
		return fmt.Sprintf("more than %d", manyValues)
	}
	return fmt.Sprint(n)
}

// aliasSizes computes how many values each node stands for, aliases
// expanded; cycle is set to the first alias found inside its own anchor.
type aliasSizes struct {
	size  map[*yaml.Node]int  // anchored nodes measured
	busy  map[*yaml.Node]bool // anchored nodes being measured
	cycle *yaml.Node
}

func (a *aliasSizes) expanded(n *yaml.Node) int {
	if n.Kind == yaml.AliasNode {
		if n.Alias == nil {
			return 1
		}
		if a.busy[n.Alias] {
			if a.cycle == nil {
				a.cycle = n
			}
			return 1
		}
		n = n.Alias
	}
	if s, ok := a.size[n]; ok {
		return s
	}
	if n.Anchor != "" {
		a.busy[n] = true
	}
	s := 1
	for i, c := range n.Content {
		if !isName(n, i) {
			s = min(s+a.expanded(c), manyValues)
		}
	}
	if n.Anchor != "" {
		delete(a.busy, n)
		a.size[n] = s
	}
	return s
}

// ownValues counts the values the document holds itself (an alias is one),
// and records the aliases of each anchor.
func ownValues(n *yaml.Node, uses map[*yaml.Node][]*yaml.Node) int {
	if n.Kind == yaml.AliasNode {
		if n.Alias != nil {
			uses[n.Alias] = append(uses[n.Alias], n)
		}
		return 1
	}
	s := 1
	for i, c := range n.Content {
		if !isName(n, i) {
			s += ownValues(c, uses)
		}
	}
	return s
}

// isName reports whether the i-th node of n is a mapping's key that is a
// plain name (a field's, a label's), which is not counted as a value.
func isName(n *yaml.Node, i int) bool {
	return n.Kind == yaml.MappingNode && i%2 == 0 && n.Content[i].Kind == yaml.ScalarNode
}
