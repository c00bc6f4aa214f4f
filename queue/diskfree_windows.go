//go:build windows

package queue

import "golang.org/x/sys/windows"

// freeBytes returns the space on dir's volume available to this process's
// user (GetDiskFreeSpaceEx: quotas included).
func freeBytes(dir string) (int64, error) {
	p, err := windows.UTF16PtrFromString(dir)
	if err != nil {
		return 0, err
	}
	var avail, total, free uint64
	if err := windows.GetDiskFreeSpaceEx(p, &avail, &total, &free); err != nil {
		return 0, err
	}
	return int64(avail), nil
}
