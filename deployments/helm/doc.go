// Package helm holds the test that renders the Switchyard Helm chart
// (./switchyard) with the Helm SDK and decodes every manifest into the
// Kubernetes API types. It is a module of its own so that the Helm and
// Kubernetes dependencies stay out of the services' modules.
package helm
