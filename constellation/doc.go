// Package constellation groups the hub that Étoile sites join and the
// client side of that relationship. The subpackages are:
//
//   - api: the wire types, their validation and the join string;
//   - pki: the hub's certificate authority and CA pinning;
//   - store: the hub's data model and storage interface (store/sqlite is
//     the default backend, the only cgo dependency, imported by the hub only);
//   - placement: the residency and capacity rules that decide where a
//     workload may run, with a reason for every refusal;
//   - hub: the HTTPS server, its admin service and remote admin client;
//   - hubcli: the `etoile hub …` command line;
//   - join: the site side (`etoile-agent join`, heartbeats, templates),
//     free of cgo so that it links into the static agent.
package constellation
