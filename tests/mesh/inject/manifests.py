"""Realistic inputs for the injector tests: Istio's Bookinfo layout (Service, ServiceAccount, Deployment per app)."""

from __future__ import annotations

BOOKINFO = """\
# Bookinfo, as Istio's samples/bookinfo/platform/kube/bookinfo.yaml lays it out (trimmed).
##################################################################################################
# Details service
##################################################################################################
apiVersion: v1
kind: Service
metadata:
  name: details
  labels:
    app: details
    service: details
spec:
  ports:
  - port: 9080
    name: http
  selector:
    app: details
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: bookinfo-details   # referenced below
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: details-v1
  labels:
    app: details
    version: v1
spec:
  replicas: 1
  selector:
    matchLabels:
      app: details
      version: v1
  template:
    metadata:
      labels:
        app: details
        version: v1
    spec:
      serviceAccountName: bookinfo-details
      containers:
      - name: details
        image: docker.io/istio/examples-bookinfo-details-v1:1.20.2
        imagePullPolicy: IfNotPresent
        ports:
        - containerPort: 9080
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: ratings-db
spec:
  serviceName: ratings-db
  selector:
    matchLabels: {app.kubernetes.io/name: ratings-db}
  template:
    metadata:
      labels: {app.kubernetes.io/name: ratings-db}
    spec:
      containers:
      - name: db
        image: mongo:7
        ports:
        - {containerPort: 27017, name: mongo}
---
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: node-agent
spec:
  selector:
    matchLabels: {name: node-agent}
  template:
    metadata:
      labels: {name: node-agent}
    spec:
      containers:
      - name: agent
        image: busybox:1.36
        command: [sleep, infinity]
---
apiVersion: v1
kind: Pod
metadata:
  name: debug
  labels: {app: debug}
spec:
  containers:
  - name: shell
    image: busybox:1.36
    ports: [{containerPort: 53, protocol: UDP}, {containerPort: 8080}]
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: legacy
spec:
  selector:
    matchLabels: {app: legacy}
  template:
    metadata:
      labels: {app: legacy}
      annotations:
        sidecar.mesh.io/inject: "false"   # this one talks to the world directly
    spec:
      containers:
      - {name: legacy, image: nginx:1.27, ports: [{containerPort: 80}]}
---
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: node-exporter
spec:
  selector:
    matchLabels: {app: node-exporter}
  template:
    metadata:
      labels: {app: node-exporter}
    spec:
      hostNetwork: true
      containers:
      - {name: exporter, image: prom/node-exporter:v1.8.1, ports: [{containerPort: 9100}]}
"""

COMPOSE = """\
# A small compose application (comments here are kept: they sit above the first key)
services:
  web:
    image: nginx:1.27
    ports:
      - "127.0.0.1:8080:80"
    depends_on: [api]
  api:
    image: example/api:2
    expose: ["9000"]
    environment:
      DATABASE_URL: postgres://db:5432/app
    labels:
      app.kubernetes.io/name: orders-api
  db:
    image: postgres:16
    ports:
      - target: 5432
        published: 15432
    labels:
      - sidecar.mesh.io/inject=false
  worker:
    image: example/worker:2
  debug:
    image: busybox:1.36
    network_mode: "service:api"
volumes:
  data: {}
"""
