module k8s.local/bootstrap/imagetool

go 1.26.6
