package auth

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// passwd runs the command at bcrypt.MinCost with stdin and returns the exit code and
// what it wrote.
func passwd(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = runPasswd(args, strings.NewReader(stdin), &out, &errOut, bcrypt.MinCost)
	return code, out.String(), errOut.String()
}

// mustPasswd runs the command and fails the test unless it exits with ExitOK.
func mustPasswd(t *testing.T, stdin string, args ...string) {
	t.Helper()
	if code, _, stderr := passwd(t, stdin, args...); code != ExitOK {
		t.Fatalf("passwd %q: exit %d, stderr %q", args, code, stderr)
	}
}

// load loads the password file at path, failing the test on error.
func load(t *testing.T, path string) *Passwords {
	t.Helper()
	p, err := LoadPasswords(path)
	if err != nil {
		t.Fatalf("LoadPasswords: %v", err)
	}
	return p
}

// checkMode fails the test unless the file at path has mode 0600.
func checkMode(t *testing.T, path string) {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("mode of %s = %v, want 0600", path, st.Mode().Perm())
	}
}

func TestPasswdCreateAddUpdateDelete(t *testing.T) {
	path := filepath.Join(t.TempDir(), "passwd")

	mustPasswd(t, "", "-c", "-b", path, "alice", "a1")
	checkMode(t, path)
	p := load(t, path)
	if p.Len() != 1 || !p.Check("alice", "a1") {
		t.Fatalf("after create: Len %d, alice ok %v", p.Len(), p.Check("alice", "a1"))
	}

	mustPasswd(t, "", "-b", path, "bob", "b1")
	p = load(t, path)
	if p.Len() != 2 || !p.Check("alice", "a1") || !p.Check("bob", "b1") {
		t.Fatalf("after add: Len %d, want alice and bob", p.Len())
	}

	mustPasswd(t, "", "-b", path, "alice", "a2")
	p = load(t, path)
	if p.Len() != 2 || p.Check("alice", "a1") || !p.Check("alice", "a2") || !p.Check("bob", "b1") {
		t.Fatalf("after update: alice a1 %v a2 %v, bob %v", p.Check("alice", "a1"), p.Check("alice", "a2"), p.Check("bob", "b1"))
	}

	mustPasswd(t, "", "-D", path, "alice")
	p = load(t, path)
	if p.Len() != 1 || p.Check("alice", "a2") || !p.Check("bob", "b1") {
		t.Fatalf("after delete: Len %d, alice %v, bob %v", p.Len(), p.Check("alice", "a2"), p.Check("bob", "b1"))
	}
	checkMode(t, path)

	// -c replaces the whole file.
	mustPasswd(t, "", "-c", "-b", path, "carol", "c1")
	p = load(t, path)
	if p.Len() != 1 || !p.Check("carol", "c1") || p.Check("bob", "b1") {
		t.Fatalf("after second create: Len %d, want carol only", p.Len())
	}
}

func TestPasswdKeepsOtherLines(t *testing.T) {
	bob := mustHash(t, "b1")
	dave := mustHash(t, "d1")
	orig := "# gateway users\n\nbob:" + bob + "\r\n# the old sensor\nalice:" + mustHash(t, "old") + "\ndave:" + dave // no final newline
	path := writeFile(t, "passwd", orig)
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}

	mustPasswd(t, "", "-b", path, "alice", "new")
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(got), "\n")
	want := strings.Split(orig, "\n")
	if len(lines) != len(want) {
		t.Fatalf("update changed the line count:\n%s", got)
	}
	for i := range want {
		if strings.HasPrefix(want[i], "alice:") {
			if !strings.HasPrefix(lines[i], "alice:$2a$04$") || lines[i] == want[i] {
				t.Errorf("line %d = %q, want alice's new hash", i+1, lines[i])
			}
			continue
		}
		if lines[i] != want[i] {
			t.Errorf("line %d = %q, want it kept as %q", i+1, lines[i], want[i])
		}
	}
	checkMode(t, path) // was 0644

	// Updating a line that ends in CRLF keeps its line ending.
	mustPasswd(t, "", "-b", path, "bob", "b1")
	got, err = os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(got), "\n\nbob:$2a$04$") || !strings.Contains(string(got), "\r\n# the old sensor\n") || strings.Contains(string(got), bob) {
		t.Errorf("after updating bob (a CRLF line):\n%q", got)
	}

	// Adding to a file without a final newline starts a new line.
	mustPasswd(t, "", "-b", path, "erin", "e1")
	p := load(t, path)
	if p.Len() != 4 || !p.Check("dave", "d1") || !p.Check("erin", "e1") || !p.Check("alice", "new") || !p.Check("bob", "b1") {
		t.Fatalf("after adding erin: Len %d", p.Len())
	}

	// Deleting keeps the comments.
	mustPasswd(t, "", "-D", path, "bob")
	got, err = os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(got), "bob:") || !strings.HasPrefix(string(got), "# gateway users\n\n# the old sensor\nalice:") {
		t.Errorf("after deleting bob:\n%s", got)
	}
}

func TestPasswdPrompt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "passwd")
	code, stdout, stderr := passwd(t, "s3cret\r\ns3cret\n", "-c", path, "alice")
	if code != ExitOK {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	if !strings.Contains(stdout, "Password: ") || !strings.Contains(stdout, "Reenter password: ") {
		t.Errorf("stdout %q, want both prompts", stdout)
	}
	if !load(t, path).Check("alice", "s3cret") {
		t.Errorf("prompted password not stored")
	}

	// Last line without a newline is still a line.
	mustPasswd(t, "pw2\npw2", path, "bob")
	if !load(t, path).Check("bob", "pw2") {
		t.Errorf("password without final newline not stored")
	}

	for _, tt := range []struct{ name, stdin, msg string }{
		{"mismatch", "one\ntwo\n", "differ"},
		{"eof", "one\n", "read password again"},
		{"nothing", "", "read password"},
		{"empty", "\n\n", "empty"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			code, _, stderr := passwd(t, tt.stdin, path, "carol")
			if code != ExitFailure || !strings.Contains(stderr, tt.msg) {
				t.Errorf("exit %d stderr %q, want %d and %q", code, stderr, ExitFailure, tt.msg)
			}
			after, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(before, after) {
				t.Errorf("failed command changed the file")
			}
		})
	}
}

func TestPasswdUsage(t *testing.T) {
	path := filepath.Join(t.TempDir(), "passwd")
	for _, args := range [][]string{
		{},
		{path},
		{path, "alice", "extra"},
		{"-b", path, "alice"},
		{"-b", path, "alice", "pw", "extra"},
		{"-c", "-D", path, "alice"},
		{"-b", "-D", path, "alice", "pw"},
		{"-x", path, "alice"},
	} {
		code, _, stderr := passwd(t, "", args...)
		if code != ExitUsage || !strings.Contains(stderr, "usage: holdfast passwd") {
			t.Errorf("passwd %q: exit %d, stderr %q; want %d and the usage", args, code, stderr, ExitUsage)
		}
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a usage error created the file")
	}
	code, stdout, _ := passwd(t, "", "-h")
	if code != ExitOK || !strings.Contains(stdout, "usage: holdfast passwd") {
		t.Errorf("-h: exit %d, stdout %q", code, stdout)
	}
}

func TestPasswdFailures(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing")
	bad := writeFile(t, "bad", "alice:"+mustHash(t, "x")+"\nnonsense\n")
	good := writeFile(t, "good", "alice:"+mustHash(t, "x")+"\n")
	for _, tt := range []struct {
		name string
		args []string
		msg  string
	}{
		{"add to missing file", []string{"-b", missing, "alice", "pw"}, "no such file"},
		{"delete from missing file", []string{"-D", missing, "alice"}, "no such file"},
		{"file with bad line", []string{"-b", bad, "bob", "pw"}, bad + ":2:"},
		{"delete unknown user", []string{"-D", good, "bob"}, "unknown user"},
		{"colon in user", []string{"-b", good, "a:b", "pw"}, "contains ':'"},
		{"empty password", []string{"-b", good, "bob", ""}, "empty"},
		{"long password", []string{"-b", good, "bob", strings.Repeat("x", 73)}, "more than 72"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := passwd(t, "", tt.args...)
			if code != ExitFailure || !strings.Contains(stderr, tt.msg) {
				t.Errorf("exit %d stderr %q, want %d and %q", code, stderr, ExitFailure, tt.msg)
			}
		})
	}
	if _, err := os.Stat(missing); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("adding to a missing file created it")
	}
	if p := load(t, good); p.Len() != 1 || !p.Check("alice", "x") {
		t.Errorf("failed commands changed %s", good)
	}
	// Nothing but the files themselves is left in the directory (no temporary files).
	entries, err := os.ReadDir(filepath.Dir(good))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("temporary file %s left behind", e.Name())
		}
	}
}

func TestPasswdDefaultCostAndSymlink(t *testing.T) {
	// One hash at the real default cost: RunPasswd must use it.
	dir := t.TempDir()
	target := filepath.Join(dir, "real")
	mustPasswd(t, "", "-c", "-b", target, "alice", "a")
	link := filepath.Join(dir, "link")
	if err := os.Symlink(target, link); err != nil {
		t.Skipf("symlinks not available: %v", err)
	}
	var out, errOut bytes.Buffer
	if code := RunPasswd([]string{"-b", link, "bob", "b"}, strings.NewReader(""), &out, &errOut); code != ExitOK {
		t.Fatalf("RunPasswd: exit %d, stderr %q", code, errOut.String())
	}
	if st, err := os.Lstat(link); err != nil || st.Mode()&os.ModeSymlink == 0 {
		t.Errorf("the symbolic link was replaced by a file")
	}
	p := load(t, target)
	if !p.Check("bob", "b") || !p.Check("alice", "a") {
		t.Fatalf("target file lacks alice or bob")
	}
	data, err := os.ReadFile(target)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if user, hash, _ := strings.Cut(line, ":"); user == "bob" {
			if cost, err := bcrypt.Cost([]byte(hash)); err != nil || cost != DefaultHashCost {
				t.Errorf("bob's hash cost = %d, %v; want %d", cost, err, DefaultHashCost)
			}
		}
	}
}

func TestFileFunctionsValidate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "passwd")
	if err := CreatePasswordFile(path, "alice", "plain"); err == nil {
		t.Errorf("CreatePasswordFile with a non-bcrypt hash succeeded")
	}
	if err := CreatePasswordFile(path, "#alice", mustHash(t, "x")); !errors.Is(err, ErrInvalidUsername) {
		t.Errorf("CreatePasswordFile with user #alice: %v, want ErrInvalidUsername", err)
	}
	if err := CreatePasswordFile(path, "alice", mustHash(t, "x")); err != nil {
		t.Fatal(err)
	}
	added, err := SetUser(path, "bob", mustHash(t, "y"))
	if err != nil || !added {
		t.Errorf("SetUser(bob) = %v, %v; want added", added, err)
	}
	added, err = SetUser(path, "bob", mustHash(t, "z"))
	if err != nil || added {
		t.Errorf("SetUser(bob) again = %v, %v; want updated", added, err)
	}
	if err := DeleteUser(path, "nobody"); !errors.Is(err, ErrUnknownUser) {
		t.Errorf("DeleteUser(nobody) = %v, want ErrUnknownUser", err)
	}
}
