// Namespaces most of these tests use.
global using StreamInference.Core.Features;
global using StreamInference.Core.Offsets;
global using StreamInference.Core.Pipeline;
