//go:build !linux

package hub

type parkState struct{}

func newPoller(*siteListener) poller { return noPoller{} }
