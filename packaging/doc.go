// Package packaging builds holdfast's Debian packages and holds what they
// install: the systemd unit (holdfast.service), the maintainer scripts and
// control template (debian/), the man page (holdfast.1) and the annotated
// example configuration (holdfast.yaml, installed as
// /etc/holdfast/holdfast.yaml).
//
// It has no Go API. Its tests build the amd64 and arm64 packages with
// build-deb.sh and check them with dpkg-deb, systemd-analyze and lintian, and,
// as root, install, upgrade, remove and purge the amd64 package on the machine
// running them. See docs/packaging.md.
package packaging
