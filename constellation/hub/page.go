package hub

import (
	"fmt"
	"html/template"
	"net/http"
	"sort"
	"time"

	"github.com/etoile-os/etoile/constellation/api"
)

// The page is server-rendered with html/template (contextual escaping of
// every site-supplied string) and needs no script; a strict CSP says so.
var pageTmpl = template.Must(template.New("page").Funcs(template.FuncMap{
	"cores": func(m int64) string { return fmt.Sprintf("%.1f", float64(m)/1000) },
	"gib":   func(b int64) string { return fmt.Sprintf("%.1f", float64(b)/(1<<30)) },
	"pct": func(used, total int64) int {
		if total <= 0 {
			return 0
		}
		return int(100 * used / total)
	},
}).Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="30">
<title>Étoile constellation</title>
<style>
body{font-family:system-ui,sans-serif;margin:1.5rem;color:#1d2330;background:#f6f7fb}
h1{font-size:1.4rem;margin:0 0 .2rem}.sub{color:#5a6275;margin:0 0 1.2rem}
.summary span{display:inline-block;margin-right:1rem;padding:.2rem .6rem;border-radius:1rem;background:#e7eaf3}
h2{font-size:1.1rem;margin:1.4rem 0 .4rem}
table{border-collapse:collapse;width:100%;background:#fff;box-shadow:0 1px 2px #0001}
th,td{text-align:left;padding:.45rem .6rem;border-bottom:1px solid #e4e7ef;font-size:.9rem}
th{background:#eef0f6;font-weight:600}
.st{font-weight:600;padding:.1rem .5rem;border-radius:.6rem}
.online{background:#d8f5e1;color:#11632d}.stale{background:#fff1c9;color:#7a5600}
.offline{background:#f1f1f1;color:#555}.revoked{background:#fbd9d9;color:#8a1010}
.tag{display:inline-block;margin-right:.2rem;padding:0 .35rem;border-radius:.3rem;background:#e7eaf3;font-size:.8rem}
.bar{display:inline-block;width:4rem;height:.5rem;background:#e4e7ef;border-radius:.25rem;vertical-align:middle;margin-right:.3rem}
.bar i{display:block;height:100%;background:#4a6cf7;border-radius:.25rem}
</style></head><body>
<h1>Étoile constellation</h1>
<p class="sub">{{.Total}} sites · template revision {{.Revision}} · as of {{.Now}}</p>
<p class="summary">{{range .Counts}}<span class="{{.Status}}">{{.Status}}: {{.N}}</span>{{end}}</p>
{{range .Countries}}
<h2 id="country-{{.Code}}">{{.Label}} <small>({{len .Sites}})</small></h2>
<table><thead><tr><th>Site</th><th>Status</th><th>Nodes</th><th>K3s</th><th>CPU</th><th>Memory</th><th>GPU</th><th>Last heartbeat</th><th>Templates</th><th>Jurisdiction · tags</th></tr></thead><tbody>
{{range .Sites}}<tr class="site" data-site="{{.Name}}">
<td>{{.Name}}{{if .Region}} <small>{{.Region}}</small>{{end}}</td>
<td><span class="st {{.Status}}">{{.Status}}</span></td>
<td>{{.Heartbeat.NodesReady}}/{{.Heartbeat.Nodes}}</td>
<td>{{.Heartbeat.K3sVersion}}</td>
<td><span class="bar"><i style="width:{{pct .Heartbeat.Capacity.CPUUsedMillis .Heartbeat.Capacity.CPUMillis}}%"></i></span>{{cores .Heartbeat.Capacity.CPUUsedMillis}}/{{cores .Heartbeat.Capacity.CPUMillis}}</td>
<td><span class="bar"><i style="width:{{pct .Heartbeat.Capacity.MemoryUsedBytes .Heartbeat.Capacity.MemoryBytes}}%"></i></span>{{gib .Heartbeat.Capacity.MemoryUsedBytes}}/{{gib .Heartbeat.Capacity.MemoryBytes}} GiB</td>
<td>{{range .Heartbeat.Capacity.GPUs}}{{.Used}}/{{.Count}} {{.Vendor}} {{end}}</td>
<td>{{if .LastHeartbeat}}{{.LastHeartbeat.Format "2006-01-02 15:04:05Z07:00"}}{{else}}never{{end}}</td>
<td>{{.Heartbeat.AppliedRevision}}{{if ne .Heartbeat.AppliedRevision .DesiredRevision}} → {{.DesiredRevision}}{{end}}</td>
<td>{{.Jurisdiction}} {{range .Tags}}<span class="tag">{{.}}</span>{{end}}</td>
</tr>{{end}}
</tbody></table>
{{else}}<p>No site has joined yet. Create a join string with <code>etoile hub token create --site NAME</code>.</p>{{end}}
</body></html>
`))

type pageCountry struct {
	Code, Label string
	Sites       []api.Site
}

type pageCount struct {
	Status string
	N      int
}

func (s *Server) handlePage(w http.ResponseWriter, r *http.Request) {
	sites, rev, err := s.Service.sitesAt(r.Context())
	if err != nil {
		s.log().Error("status page", "err", err)
		http.Error(w, "hub store unavailable: see the hub's log", http.StatusInternalServerError)
		return
	}
	byCountry := map[string][]api.Site{}
	counts := map[string]int{}
	for _, st := range sites {
		byCountry[st.Country] = append(byCountry[st.Country], st)
		counts[st.Status]++
	}
	data := struct {
		Total     int
		Revision  int64
		Now       string
		Counts    []pageCount
		Countries []pageCountry
	}{Total: len(sites), Revision: rev, Now: s.Service.now().Format(time.RFC3339)}
	for _, st := range []string{api.StatusOnline, api.StatusStale, api.StatusOffline, api.StatusRevoked} {
		data.Counts = append(data.Counts, pageCount{st, counts[st]})
	}
	for c, list := range byCountry {
		label, code := c, c
		if c == "" {
			label, code = "No country", "none"
		}
		data.Countries = append(data.Countries, pageCountry{Code: code, Label: label, Sites: list})
	}
	sort.Slice(data.Countries, func(i, j int) bool { return data.Countries[i].Label < data.Countries[j].Label })
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", "no-store")
	if err := pageTmpl.Execute(w, data); err != nil {
		s.log().Debug("status page write", "err", err)
	}
}
