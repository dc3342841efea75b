// Command c2sp_verify checks casebridge's published audit log with Go's golang.org/x/mod/sumdb/note and tlog, an
// implementation casebridge did not write (tests/integration/audit/test_audit_witnessing.py builds and runs it).
//
// It reads, from the directory given as its only argument: log.json (GET /.well-known/audit-log), checkpoint.txt
// (GET /audit/checkpoint), inclusion.json and consistency.json (the proofs' HTTP responses) and export.jsonl (the
// `casebridge audit export` file). It prints one JSON object of what it verified, or a message on stderr and exits 1.
//
// The log's signatures and the RFC 6962 proofs are checked by note and tlog alone. Co-signatures are C2SP
// cosignature/v1 (https://c2sp.org/tlog-cosignature), which note does not know: cosignatureVerifier below is a
// note.Verifier written from that specification, the way witness tooling plugs it into note.Open.
package main

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

type logInfo struct {
	Origin string `json:"origin"`
	Names  []struct {
		Origin       string   `json:"origin"`
		FromSize     int64    `json:"from_size"`
		VerifierKeys []string `json:"verifier_keys"`
	} `json:"names"`
	Cosigners []struct {
		Name        string `json:"name"`
		VerifierKey string `json:"verifier_key"`
	} `json:"cosigners"`
}

type inclusionProof struct {
	EventID   string   `json:"event_id"`
	LeafIndex int64    `json:"leaf_index"`
	LeafHash  string   `json:"leaf_hash"`
	Size      int64    `json:"size"`
	Root      string   `json:"root"`
	Proof     []string `json:"proof"`
	Note      string   `json:"note"`
}

type consistencyProof struct {
	OldSize int64    `json:"old_size"`
	NewSize int64    `json:"new_size"`
	OldRoot string   `json:"old_root"`
	NewRoot string   `json:"new_root"`
	Proof   []string `json:"proof"`
	OldNote string   `json:"old_note"`
	NewNote string   `json:"new_note"`
}

type exportLine struct {
	Type         string   `json:"type"`
	Origin       string   `json:"origin"`
	CosignerKeys []string `json:"cosigner_keys"`
	Seq          int64    `json:"seq"`
	EventID      string   `json:"event_id"`
	Canonical    *string  `json:"canonical"`
	LeafHash     string   `json:"leaf_hash"`
	Note         string   `json:"note"`
	Events       int64    `json:"events"`
	Root         string   `json:"root"`
}

// cosignatureVerifier checks a cosignature/v1 line: key id SHA-256(name || "\n" || 0x04 || key)[:4], then an
// 8-byte big-endian timestamp and an Ed25519 signature over "cosignature/v1\ntime <t>\n" and the checkpoint body.
type cosignatureVerifier struct {
	name string
	hash uint32
	key  ed25519.PublicKey
}

func (v cosignatureVerifier) Name() string    { return v.name }
func (v cosignatureVerifier) KeyHash() uint32 { return v.hash }
func (v cosignatureVerifier) Verify(msg, sig []byte) bool {
	if len(sig) != 8+ed25519.SignatureSize {
		return false
	}
	t := binary.BigEndian.Uint64(sig[:8])
	if t > math.MaxInt64 {
		return false
	}
	signed := append([]byte(fmt.Sprintf("cosignature/v1\ntime %d\n", t)), msg...)
	return ed25519.Verify(v.key, signed, sig[8:])
}

func keyHash(name string, typ byte, key []byte) uint32 {
	h := sha256.Sum256(append(append([]byte(name+"\n"), typ), key...))
	return binary.BigEndian.Uint32(h[:4])
}

// cosigner returns the cosignature/v1 verifier of a type 0x04 verifier key, and a note verifier of the same key
// for casebridge's older, plain co-signatures.
func cosigner(vkey string) (note.Verifier, note.Verifier, error) {
	parts := strings.SplitN(vkey, "+", 3)
	if len(parts) != 3 {
		return nil, nil, fmt.Errorf("malformed cosigner key %q", vkey)
	}
	name, hashHex, key64 := parts[0], parts[1], parts[2]
	hash, err1 := strconv.ParseUint(hashHex, 16, 32)
	key, err2 := base64.StdEncoding.DecodeString(key64)
	if err1 != nil || err2 != nil || len(key) != 1+ed25519.PublicKeySize || key[0] != 0x04 {
		return nil, nil, fmt.Errorf("not a cosignature/v1 Ed25519 key: %q", vkey)
	}
	if keyHash(name, 0x04, key[1:]) != uint32(hash) {
		return nil, nil, fmt.Errorf("key hash of %q does not match", vkey)
	}
	old := fmt.Sprintf("%s+%08x+%s", name, keyHash(name, 0x01, key[1:]),
		base64.StdEncoding.EncodeToString(append([]byte{0x01}, key[1:]...)))
	plain, err := note.NewVerifier(old)
	if err != nil {
		return nil, nil, err
	}
	return cosignatureVerifier{name, uint32(hash), ed25519.PublicKey(key[1:])}, plain, nil
}

type tree struct {
	origin string
	size   int64
	root   tlog.Hash
}

func parseTree(text string) (tree, error) {
	lines := strings.SplitN(text, "\n", 4)
	if len(lines) < 4 {
		return tree{}, errors.New("a checkpoint needs origin, size and root lines")
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || size < 0 {
		return tree{}, fmt.Errorf("bad tree size %q", lines[1])
	}
	root, err := hash64(lines[2])
	if err != nil {
		return tree{}, err
	}
	return tree{lines[0], size, root}, nil
}

func hash64(text string) (tlog.Hash, error) {
	var h tlog.Hash
	raw, err := base64.StdEncoding.DecodeString(text)
	if err != nil || len(raw) != tlog.HashSize {
		return h, fmt.Errorf("bad hash %q", text)
	}
	copy(h[:], raw)
	return h, nil
}

func hashes64(texts []string) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(texts))
	for i, text := range texts {
		h, err := hash64(text)
		if err != nil {
			return nil, err
		}
		out[i] = h
	}
	return out, nil
}

// open verifies a note with the known keys and returns its tree, checking that one of the wanted names signed it.
func open(text string, known note.Verifiers, signers map[string]bool) (tree, *note.Note, error) {
	n, err := note.Open([]byte(text), known)
	if err != nil {
		return tree{}, nil, err
	}
	signed := false
	for _, sig := range n.Sigs {
		signed = signed || signers[sig.Name]
	}
	if !signed {
		return tree{}, nil, errors.New("no signature by the log")
	}
	t, err := parseTree(n.Text)
	return t, n, err
}

func readJSON(dir, name string, into any) error {
	data, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return err
	}
	return json.Unmarshal(data, into)
}

func run(dir string) (map[string]any, error) {
	var log logInfo
	if err := readJSON(dir, "log.json", &log); err != nil {
		return nil, err
	}
	var logKeys []note.Verifier
	names, seen := map[string]bool{}, map[string]bool{}
	nameAt := func(size int64) string {
		current := ""
		for _, name := range log.Names {
			if name.FromSize <= size {
				current = name.Origin
			}
		}
		return current
	}
	for _, name := range log.Names {
		names[name.Origin] = true
		for _, vkey := range name.VerifierKeys {
			if seen[vkey] {
				continue
			}
			seen[vkey] = true
			v, err := note.NewVerifier(vkey)
			if err != nil {
				return nil, fmt.Errorf("log key %q: %v", vkey, err)
			}
			logKeys = append(logKeys, v)
		}
	}
	var cosignerKeys []note.Verifier
	cosignerNames := map[string]bool{}
	for _, c := range log.Cosigners {
		v1, _, err := cosigner(c.VerifierKey)
		if err != nil {
			return nil, err
		}
		cosignerKeys = append(cosignerKeys, v1)
		cosignerNames[c.Name] = true
	}
	logOnly := note.VerifierList(logKeys...)
	result := map[string]any{}

	// The latest checkpoint, with the log's signature and each agency's co-signature verified.
	checkpoint, err := os.ReadFile(filepath.Join(dir, "checkpoint.txt"))
	if err != nil {
		return nil, err
	}
	latest, n, err := open(string(checkpoint), note.VerifierList(append(logKeys, cosignerKeys...)...), names)
	if err != nil {
		return nil, fmt.Errorf("checkpoint.txt: %v", err)
	}
	if latest.origin != log.Origin || nameAt(latest.size) != latest.origin {
		return nil, fmt.Errorf("checkpoint.txt is for %q, not %q", latest.origin, log.Origin)
	}
	cosigned := 0
	for _, sig := range n.Sigs {
		if cosignerNames[sig.Name] {
			cosigned++
		}
	}
	result["checkpoint"] = map[string]any{"origin": latest.origin, "size": latest.size, "cosignatures": cosigned}

	// An event's inclusion, its leaf hash computed here from the exported canonical bytes.
	leaves, err := readExport(dir, logOnly, names, nameAt, result)
	if err != nil {
		return nil, err
	}
	var inclusion inclusionProof
	if err := readJSON(dir, "inclusion.json", &inclusion); err != nil {
		return nil, err
	}
	signed, _, err := open(inclusion.Note, logOnly, names)
	if err != nil {
		return nil, fmt.Errorf("inclusion.json note: %v", err)
	}
	proof, err := hashes64(inclusion.Proof)
	if err != nil {
		return nil, err
	}
	if inclusion.LeafIndex < 0 || inclusion.LeafIndex >= int64(len(leaves)) || signed.size != inclusion.Size {
		return nil, errors.New("the inclusion proof is not for the exported log's checkpoint")
	}
	if stated, err := hash64(inclusion.LeafHash); err != nil || stated != leaves[inclusion.LeafIndex] {
		return nil, errors.New("the inclusion proof's leaf hash is not the exported event's")
	}
	if err := tlog.CheckRecord(proof, signed.size, signed.root, inclusion.LeafIndex, leaves[inclusion.LeafIndex]); err != nil {
		return nil, fmt.Errorf("inclusion proof: %v", err)
	}
	result["inclusion"] = map[string]any{"leaf_index": inclusion.LeafIndex, "size": signed.size}

	// One signed tree extending another.
	var consistency consistencyProof
	if err := readJSON(dir, "consistency.json", &consistency); err != nil {
		return nil, err
	}
	older, _, err := open(consistency.OldNote, logOnly, names)
	if err != nil {
		return nil, fmt.Errorf("consistency.json old note: %v", err)
	}
	newer, _, err := open(consistency.NewNote, logOnly, names)
	if err != nil {
		return nil, fmt.Errorf("consistency.json new note: %v", err)
	}
	proof, err = hashes64(consistency.Proof)
	if err != nil {
		return nil, err
	}
	if err := tlog.CheckTree(proof, newer.size, newer.root, older.size, older.root); err != nil {
		return nil, fmt.Errorf("consistency proof: %v", err)
	}
	result["consistency"] = map[string]any{"old_size": older.size, "new_size": newer.size}
	return result, nil
}

// readExport recomputes every leaf hash and the tree at every checkpoint of the export file, and verifies its
// checkpoints and co-signatures; it returns the leaf hashes.
func readExport(dir string, logOnly note.Verifiers, names map[string]bool, nameAt func(int64) string,
	result map[string]any) ([]tlog.Hash, error) {
	file, err := os.Open(filepath.Join(dir, "export.jsonl"))
	if err != nil {
		return nil, err
	}
	defer file.Close()
	var leaves, stored []tlog.Hash
	reader := tlog.HashReaderFunc(func(indexes []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(indexes))
		for i, index := range indexes {
			if index >= int64(len(stored)) {
				return nil, fmt.Errorf("no stored hash %d", index)
			}
			out[i] = stored[index]
		}
		return out, nil
	})
	var cosigners []note.Verifier
	cosignerNames := map[string]bool{}
	checkpoints, cosignatures := 0, 0
	lines := bufio.NewScanner(file)
	lines.Buffer(make([]byte, 1<<20), 1<<26)
	for lines.Scan() {
		var line exportLine
		if err := json.Unmarshal(lines.Bytes(), &line); err != nil {
			return nil, err
		}
		switch line.Type {
		case "header":
			for _, vkey := range line.CosignerKeys {
				v1, plain, err := cosigner(vkey)
				if err != nil {
					return nil, err
				}
				cosigners = append(cosigners, v1, plain)
				cosignerNames[v1.Name()] = true
			}
		case "event":
			if line.Canonical == nil || line.Seq != int64(len(leaves))+1 {
				return nil, fmt.Errorf("export event %d is missing or out of order", line.Seq)
			}
			leaf := tlog.RecordHash([]byte(*line.Canonical))
			if stated, err := hex.DecodeString(line.LeafHash); err != nil || !bytes.Equal(stated, leaf[:]) {
				return nil, fmt.Errorf("export event %d: the leaf hash is not the hash of its canonical bytes", line.Seq)
			}
			added, err := tlog.StoredHashesForRecordHash(int64(len(leaves)), leaf, reader)
			if err != nil {
				return nil, err
			}
			stored = append(stored, added...)
			leaves = append(leaves, leaf)
		case "checkpoint":
			t, _, err := open(line.Note, logOnly, names)
			if err != nil {
				return nil, fmt.Errorf("export checkpoint: %v", err)
			}
			if nameAt(t.size) != t.origin {
				return nil, fmt.Errorf("export checkpoint of size %d is signed as %q", t.size, t.origin)
			}
			if err := checkRoot(t, reader, int64(len(leaves))); err != nil {
				return nil, err
			}
			checkpoints++
		case "cosignature":
			t, _, err := open(line.Note, note.VerifierList(cosigners...), cosignerNames)
			if err != nil {
				return nil, fmt.Errorf("export co-signature: %v", err)
			}
			if nameAt(t.size) != t.origin {
				return nil, fmt.Errorf("export co-signature of size %d is for %q", t.size, t.origin)
			}
			if err := checkRoot(t, reader, int64(len(leaves))); err != nil {
				return nil, err
			}
			cosignatures++
		case "end":
			whole, err := tlog.TreeHash(int64(len(leaves)), reader)
			if err != nil {
				return nil, err
			}
			if hex.EncodeToString(whole[:]) != line.Root || line.Events != int64(len(leaves)) {
				return nil, errors.New("the export's end line does not match its events")
			}
		}
	}
	if err := lines.Err(); err != nil {
		return nil, err
	}
	result["export"] = map[string]any{"events": len(leaves), "checkpoints": checkpoints, "cosignatures": cosignatures}
	return leaves, nil
}

func checkRoot(t tree, reader tlog.HashReader, leaves int64) error {
	if t.size > leaves {
		return fmt.Errorf("a tree of size %d is longer than the exported log", t.size)
	}
	root, err := tlog.TreeHash(t.size, reader)
	if err != nil {
		return err
	}
	if root != t.root {
		return fmt.Errorf("the tree of size %d does not match the exported events", t.size)
	}
	return nil
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: c2sp_verify DIR")
		os.Exit(2)
	}
	result, err := run(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "c2sp_verify:", err)
		os.Exit(1)
	}
	out, _ := json.Marshal(result)
	fmt.Println(string(out))
}
