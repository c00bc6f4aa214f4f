// Package auth decides which local clients may connect to holdfast's broker and what
// they may do there, from two files in mosquitto's formats so that an existing
// mosquitto setup carries over.
//
// The password file ([LoadPasswords]) holds one "username:hash" line per user, the hash
// in bcrypt's modular crypt form ("$2a$10$..."). "#" starts a comment line; blank lines
// are allowed. [Passwords.Check] answers a CONNECT. The file is written by [RunPasswd]
// (the "holdfast passwd" command, used like mosquitto_passwd) or by
// [CreatePasswordFile], [SetUser] and [DeleteUser], which rewrite it atomically and keep
// every other line as it was.
//
// The ACL file ([LoadACL]) uses mosquitto's acl_file syntax:
//
//	# lines before the first "user" line apply to anonymous clients
//	topic read public/#
//	user alice
//	topic readwrite alice/#
//	topic deny alice/secret/#
//	pattern write devices/%c/up
//	pattern read devices/%u/down/#
//
// "topic [read|write|readwrite|deny] FILTER" grants (or denies) access to the clients of
// its section, readwrite when no access is given; "pattern ..." applies to every client
// wherever it appears, with %u replaced by the username and %c by the client identifier.
// A deny rule that matches wins over any grant. [ACL.CanPublish], [ACL.CanSubscribe] and
// [ACL.CanReceive] answer the broker's three questions.
//
// Loaded [Passwords] and [ACL] values are immutable and safe for concurrent use by any
// number of goroutines. To reload after the files changed, load new values and swap them
// in (for example through an atomic.Pointer); checks already running finish on the old
// ones.
package auth
