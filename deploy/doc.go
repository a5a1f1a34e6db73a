// Package deploy holds what operators deploy ICA with: the container image
// (Dockerfile), the Helm chart for AKS (helm/ica). It has no Go code; its
// tests lint and render the chart and check the Dockerfile.
package deploy
