package main

import (
	"archive/tar"
	"encoding/json"
	"os"
	"strings"
	"time"
)

type imageOptions struct {
	Name, Rootfs, User, WorkingDir, Arch string
	Entrypoint, Cmd, Env                 []string
	ExposedPorts                         []string
	BindCap                              listFlag
}

const (
	mediaIndex    = "application/vnd.oci.image.index.v1+json"
	mediaManifest = "application/vnd.oci.image.manifest.v1+json"
	mediaConfig   = "application/vnd.oci.image.config.v1+json"
	mediaLayer    = "application/vnd.oci.image.layer.v1.tar"
)

type descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int               `json:"size"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Platform    map[string]string `json:"platform,omitempty"`
}

// writeImage writes the OCI layout (oci-layout, index.json, blobs/sha256/*)
// plus Docker's manifest.json, as one tar.
func writeImage(out string, o imageOptions) error {
	lay, err := buildLayer(o.Rootfs, o.BindCap)
	if err != nil {
		return err
	}
	config, err := json.Marshal(imageConfig(o, lay.digest))
	if err != nil {
		return err
	}
	manifest, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     mediaManifest,
		"config":        descriptor{MediaType: mediaConfig, Digest: sha256Digest(config), Size: len(config)},
		"layers":        []descriptor{{MediaType: mediaLayer, Digest: lay.digest, Size: len(lay.blob)}},
	})
	if err != nil {
		return err
	}
	index, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     mediaIndex,
		"manifests": []descriptor{{
			MediaType: mediaManifest, Digest: sha256Digest(manifest), Size: len(manifest),
			Annotations: map[string]string{
				"io.containerd.image.name":          o.Name,
				"org.opencontainers.image.ref.name": tagOf(o.Name),
			},
			Platform: map[string]string{"architecture": o.Arch, "os": "linux"},
		}},
	})
	if err != nil {
		return err
	}
	docker, err := json.Marshal([]map[string]any{{
		"Config":   blobPath(sha256Digest(config)),
		"RepoTags": []string{o.Name},
		"Layers":   []string{blobPath(lay.digest)},
	}})
	if err != nil {
		return err
	}
	files := []struct {
		name string
		data []byte
	}{
		{"oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)},
		{blobPath(lay.digest), lay.blob},
		{blobPath(sha256Digest(config)), config},
		{blobPath(sha256Digest(manifest)), manifest},
		{"index.json", index},
		{"manifest.json", docker},
	}
	tmp := out + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	tw := tar.NewWriter(f)
	for _, d := range []string{"blobs/", "blobs/sha256/"} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: 0o755, ModTime: time.Unix(0, 0)}); err != nil {
			return err
		}
	}
	for _, e := range files {
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: e.name, Mode: 0o644, Size: int64(len(e.data)), ModTime: time.Unix(0, 0)}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if _, err := tw.Write(e.data); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, out)
}

func imageConfig(o imageOptions, diffID string) map[string]any {
	cfg := map[string]any{}
	set := func(k string, v any, ok bool) {
		if ok {
			cfg[k] = v
		}
	}
	set("User", o.User, o.User != "")
	set("WorkingDir", o.WorkingDir, o.WorkingDir != "")
	set("Entrypoint", o.Entrypoint, o.Entrypoint != nil)
	set("Cmd", o.Cmd, o.Cmd != nil)
	env := append([]string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}, o.Env...)
	cfg["Env"] = env
	if len(o.ExposedPorts) > 0 {
		ports := map[string]struct{}{}
		for _, p := range o.ExposedPorts {
			ports[p] = struct{}{}
		}
		cfg["ExposedPorts"] = ports
	}
	return map[string]any{
		"created":      time.Unix(0, 0).UTC().Format(time.RFC3339),
		"architecture": o.Arch,
		"os":           "linux",
		"config":       cfg,
		"rootfs":       map[string]any{"type": "layers", "diff_ids": []string{diffID}},
		"history":      []map[string]any{{"created_by": "k8s bootstrap/imagetool " + o.Name}},
	}
}

func blobPath(digest string) string { return "blobs/sha256/" + strings.TrimPrefix(digest, "sha256:") }

// tagOf returns the tag of a reference ("registry.k8s.io/pause:3.10.2" -> "3.10.2"),
// the form containerd's own exporter writes to org.opencontainers.image.ref.name.
func tagOf(ref string) string {
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		return ref[i+1:]
	}
	return "latest"
}
