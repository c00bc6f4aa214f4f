//go:build unix

package main

import (
	"os"
	"os/user"
	"strconv"
	"syscall"
)

// dirOwner returns the name of the user who owns dir (its uid if the name
// is unknown, "" if dir cannot be read) and whether that is this process's
// effective user.
func dirOwner(dir string) (name string, mine bool) {
	fi, err := os.Stat(dir)
	if err != nil {
		return "", false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return "", false
	}
	uid := strconv.FormatUint(uint64(st.Uid), 10)
	name = uid
	if u, err := user.LookupId(uid); err == nil {
		name = u.Username
	}
	return name, int(st.Uid) == os.Geteuid()
}
