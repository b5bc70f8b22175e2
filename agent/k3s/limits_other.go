//go:build !linux

package k3s

func raiseLimits() error { return nil }
