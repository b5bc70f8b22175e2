package api

import "encoding/json"

// MaxAnswerBytes bounds what a site reads of one hub answer (join, renewal,
// heartbeat). The heartbeat answer that carries a site's templates is the
// only one that comes near it.
const MaxAnswerBytes = 8 << 20

// MaxTemplateSetBytes bounds the templates one site can be sent in one
// heartbeat answer, counted as they travel (TemplateWireBytes): the hub
// refuses a template that would let any site's selection exceed it. It
// stays 2 MiB below MaxAnswerBytes, room for the rest of the answer and
// for fields a later hub may add.
const MaxTemplateSetBytes = 6 << 20

// TemplateWireBytes is what one template takes in a heartbeat answer: its
// JSON encoding, as the hub writes it (a manifest full of <, > or & takes
// up to six times its length once escaped), and the comma that separates it
// from the next.
func TemplateWireBytes(name, manifest string) int {
	b, err := json.Marshal(TemplateObject{Name: name, Manifest: manifest})
	if err != nil {
		// Strings always encode; count the worst case if that ever changes.
		return 6*(len(name)+len(manifest)) + 64
	}
	return len(b) + 1
}
