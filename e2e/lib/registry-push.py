#!/usr/bin/env python3
"""registry-push.py ARCHIVE REGISTRY REPO:TAG USER CA TEXT: pushes the image of an OCI archive (such as the
payload's busybox.tar) with one more layer, a file /registry-e2e holding TEXT, to REGISTRY (host:port) over
HTTPS: basic auth as USER with the password read from stdin (not from the command line or environment, which
`ps` shows), the server's certificate checked against the CA file. Prints the new layer's digest: that layer exists
nowhere else, so a node that runs the image pulled it from the registry (used by e2e/registry.sh).

`-` for REPO:TAG takes the archive's own name without its registry host (a mirror's path), `-` for USER pushes
without authentication (no password read), `-` for TEXT pushes the image as it is, with no layer added (used by
e2e/conformance.sh's registry mirror of the kit's images)."""
import base64
import hashlib
import io
import json
import os
import ssl
import sys
import tarfile
import urllib.parse
import urllib.request

LAYER = "application/vnd.oci.image.layer.v1.tar"


def digest(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def read_archive(path):
    """The archive's files by name, and a function from a digest to its blob."""
    files = {}
    with tarfile.open(path) as t:
        for m in t.getmembers():
            if m.isfile():
                files[os.path.normpath(m.name)] = t.extractfile(m).read()
    return files, lambda d: files["blobs/sha256/" + d.split(":", 1)[1]]


def one_file_layer(name, text):
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as t:
        data = text.encode()
        info = tarfile.TarInfo(name)
        info.size, info.mode = len(data), 0o644
        t.addfile(info, io.BytesIO(data))
    return out.getvalue()


class Registry:
    def __init__(self, host, repo, user, password, ca):
        self.base = f"https://{host}/v2/{repo}"
        self.ctx = ssl.create_default_context(cafile=ca)
        self.headers = {} if user is None else {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}

    def request(self, method, url, data=None, ctype=None):
        r = urllib.request.Request(url, data=data, method=method, headers=dict(self.headers))
        if ctype:
            r.add_header("Content-Type", ctype)
        return urllib.request.urlopen(r, context=self.ctx)

    def push_blob(self, data):
        d = digest(data)
        with self.request("POST", self.base + "/blobs/uploads/") as r:
            location = urllib.parse.urljoin(self.base, r.headers["Location"])
        sep = "&" if "?" in location else "?"
        with self.request("PUT", f"{location}{sep}digest={d}", data, "application/octet-stream"):
            pass

    def push_manifest(self, tag, manifest, ctype):
        with self.request("PUT", f"{self.base}/manifests/{tag}", manifest, ctype):
            pass


def main():
    archive, host, ref, user, ca, text = sys.argv[1:7]
    files, blob = read_archive(archive)
    entry = json.loads(files["index.json"])["manifests"][0]
    if ref == "-":
        ref = entry["annotations"]["io.containerd.image.name"].split("/", 1)[1]
    repo, tag = ref.rsplit(":", 1)
    manifest_bytes = blob(entry["digest"])
    manifest = json.loads(manifest_bytes)
    ctype = manifest.get("mediaType") or entry.get("mediaType") or "application/vnd.oci.image.manifest.v1+json"
    config_bytes = blob(manifest["config"]["digest"])
    blobs = [blob(l["digest"]) for l in manifest["layers"]]
    layer = None
    if text != "-":
        config = json.loads(config_bytes)
        layer = one_file_layer("registry-e2e", text)
        config["rootfs"]["diff_ids"].append(digest(layer))
        config_bytes = json.dumps(config).encode()
        manifest["mediaType"] = "application/vnd.oci.image.manifest.v1+json"
        manifest["config"].update(digest=digest(config_bytes), size=len(config_bytes))
        manifest["layers"].append({"mediaType": LAYER, "digest": digest(layer), "size": len(layer)})
        blobs.append(layer)
        manifest_bytes, ctype = json.dumps(manifest).encode(), manifest["mediaType"]
    password = None if user == "-" else sys.stdin.readline().rstrip("\n")
    reg = Registry(host, repo, None if user == "-" else user, password, ca)
    for data in blobs + [config_bytes]:
        reg.push_blob(data)
    reg.push_manifest(tag, manifest_bytes, ctype)
    print(digest(layer) if layer else f"{ref} {entry['digest']}")


if __name__ == "__main__":
    main()
