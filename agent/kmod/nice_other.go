//go:build !linux

package kmod

import "errors"

func setThreadNice(tid, nice int) error {
	return errors.New("per-thread priorities are Linux only")
}

func gettid() int { return 0 }
