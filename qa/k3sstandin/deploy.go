package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/etoile-os/etoile/internal/kubeyaml"
)

// deployCheck reads dir, a server's manifests folder, as K3s's deploy
// controller picks its files (docs.k3s.io, "Auto-Deploying Manifests";
// k3s-io/k3s pkg/deploy): those ending in .yaml, .yml or .json (in any
// case) and not beginning with a dot, a file with a NAME.skip beside it
// skipped, each file the AddOn named after its name up to the first dot.
// It deploys nothing: it says, in one line, what K3s would deploy —
// standin-deploy-ok addons=NAME:OBJECTS:MODE,… (sorted) — or
// standin-deploy-failed with the first file K3s could not read and why, or
// two files one AddOn would track (each file's apply would prune the
// other's objects).
func deployCheck(dir string) string {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Sprintf("standin-deploy-failed reason=%q", err.Error())
	}
	var addons []string
	files := map[string]string{} // AddOn → file
	for _, e := range entries {
		name := e.Name()
		ext := strings.ToLower(filepath.Ext(name))
		if !e.Type().IsRegular() || !slices.Contains([]string{".yaml", ".yml", ".json"}, ext) || strings.HasPrefix(name, ".") {
			continue
		}
		if _, err := os.Stat(filepath.Join(dir, name+".skip")); err == nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return fmt.Sprintf("standin-deploy-failed file=%s reason=%q", name, err.Error())
		}
		n, err := kubeyaml.Objects(string(b))
		if err != nil {
			return fmt.Sprintf("standin-deploy-failed file=%s reason=%q", name, err.Error())
		}
		info, err := e.Info()
		if err != nil {
			return fmt.Sprintf("standin-deploy-failed file=%s reason=%q", name, err.Error())
		}
		addon, _, _ := strings.Cut(name, ".")
		if other, dup := files[addon]; dup {
			return fmt.Sprintf("standin-deploy-failed file=%s reason=%q", name, "AddOn "+addon+" also tracks "+other+": each file's apply would prune the other's objects")
		}
		files[addon] = name
		addons = append(addons, fmt.Sprintf("%s:%d:%04o", addon, n, info.Mode().Perm()))
	}
	slices.Sort(addons)
	return "standin-deploy-ok addons=" + strings.Join(addons, ",")
}
