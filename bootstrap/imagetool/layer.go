package main

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// layer is an uncompressed tar blob (mediaLayer) and the digest an image
// refers to it by: the manifest's layer digest and the config's diff_id are
// the same. Not gzip: the payload is zstd-compressed as a whole, which
// compresses a plain tar far better than it can a gzip stream (bootstrap/README.md,
// "Image layers"); containerd imports either.
type layer struct {
	blob   []byte
	digest string // sha256 of blob (manifest layers and config rootfs.diff_ids)
}

// buildLayer tars dir (paths relative to it, sorted by WalkDir) as root-owned
// entries with mtime 0, so the same tree always gives the same digests.
func buildLayer(dir string, bindCap []string) (*layer, error) {
	var buf bytesBuffer
	tw := tar.NewWriter(&buf)
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || path == dir {
			return err
		}
		return addEntry(tw, dir, path, bindCap)
	})
	if err != nil {
		return nil, fmt.Errorf("tar %s: %w", dir, err)
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return &layer{blob: buf.b, digest: sha256Digest(buf.b)}, nil
}

func addEntry(tw *tar.Writer, root, path string, bindCap []string) error {
	info, err := os.Lstat(path)
	if err != nil {
		return err
	}
	link := ""
	if info.Mode()&fs.ModeSymlink != 0 {
		if link, err = os.Readlink(path); err != nil {
			return err
		}
	}
	hdr, err := tar.FileInfoHeader(info, link)
	if err != nil {
		return err
	}
	rel, err := filepath.Rel(root, path)
	if err != nil {
		return err
	}
	hdr.Name = filepath.ToSlash(rel)
	if info.IsDir() {
		hdr.Name += "/"
	}
	hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = 0, 0, "", ""
	hdr.ModTime, hdr.AccessTime, hdr.ChangeTime = time.Unix(0, 0), time.Time{}, time.Time{}
	hdr.Format = tar.FormatPAX
	if slices.Contains(bindCap, "/"+hdr.Name) {
		// containerd's unpacker sets SCHILY.xattr.* records as xattrs.
		hdr.PAXRecords = map[string]string{"SCHILY.xattr.security.capability": netBindServiceCap()}
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	if !info.Mode().IsRegular() {
		return nil
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(tw, f)
	return err
}

// netBindServiceCap is the security.capability xattr value (struct
// vfs_cap_data, revision 2) for cap_net_bind_service=+ep: lets a non-root
// process bind ports below 1024, as `setcap` does in upstream's CoreDNS image.
func netBindServiceCap() string {
	const capNetBindService = 10
	v := make([]byte, 20)
	binary.LittleEndian.PutUint32(v[0:], 0x02000000|0x1)       // VFS_CAP_REVISION_2 | VFS_CAP_FLAGS_EFFECTIVE
	binary.LittleEndian.PutUint32(v[4:], 1<<capNetBindService) // permitted, low word
	return string(v)                                           // inheritable and high words stay 0
}

type bytesBuffer struct{ b []byte }

func (w *bytesBuffer) Write(p []byte) (int, error) { w.b = append(w.b, p...); return len(p), nil }

func sha256Digest(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}
