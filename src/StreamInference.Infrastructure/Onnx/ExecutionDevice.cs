namespace StreamInference.Infrastructure.Onnx;

public enum ExecutionDeviceKind
{
    Cpu,
    Cuda,
    Auto,
}

/// <summary>
/// Where ONNX Runtime runs the model (<c>Model:Device</c>): <c>cpu</c>; <c>cuda</c> or <c>cuda:&lt;id&gt;</c>,
/// which must be met at start or the start fails with the reason; <c>auto</c>, CUDA device 0 when its
/// execution provider loads, else the CPU with a warning.
/// </summary>
public readonly record struct ExecutionDevice(ExecutionDeviceKind Kind, int DeviceId)
{
    public static ExecutionDevice Cpu => new(ExecutionDeviceKind.Cpu, 0);

    public static bool TryParse(string? text, out ExecutionDevice device, out string error)
    {
        device = Cpu;
        error = "";
        var value = text?.Trim().ToLowerInvariant() ?? "";
        switch (value)
        {
            case "cpu":
                return true;
            case "auto":
                device = new ExecutionDevice(ExecutionDeviceKind.Auto, 0);
                return true;
            case "cuda":
                device = new ExecutionDevice(ExecutionDeviceKind.Cuda, 0);
                return true;
        }
        if (value.StartsWith("cuda:", StringComparison.Ordinal)
            && int.TryParse(value.AsSpan(5), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var id))
        {
            device = new ExecutionDevice(ExecutionDeviceKind.Cuda, id);
            return true;
        }
        error = $"Model:Device '{text}' is not one of cpu, cuda, cuda:<id>, auto.";
        return false;
    }

    public override string ToString() => Kind switch
    {
        ExecutionDeviceKind.Cuda => $"cuda:{DeviceId}",
        ExecutionDeviceKind.Auto => "auto",
        _ => "cpu",
    };
}
