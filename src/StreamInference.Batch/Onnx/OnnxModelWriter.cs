using System.Text;

namespace StreamInference.Batch.Onnx;

/// <summary>
/// Writes small ONNX models (ModelProto, protobuf wire format) without a protobuf or ONNX package:
/// enough of the format for linear models, tree-converter-style classifiers (ai.onnx.ml
/// LinearClassifier + ZipMap) and MLPs. Field numbers follow onnx/onnx.proto.
/// </summary>
public sealed class OnnxGraph
{
    private readonly List<byte[]> _nodes = [];
    private readonly List<byte[]> _initializers = [];
    private readonly List<byte[]> _inputs = [];
    private readonly List<byte[]> _outputs = [];
    private bool _usesMl;

    public const int Float = 1;
    public const int Int64 = 7;
    public const int String = 8;

    public OnnxGraph(string name) => Name = name;

    public string Name { get; }

    /// <summary>A float tensor input [N, columns] with a symbolic batch dimension.</summary>
    public OnnxGraph InputMatrix(string name, int columns)
    {
        _inputs.Add(ValueInfo(name, TensorType(Float, [-1, columns])));
        return this;
    }

    /// <summary>An input of any element type and shape (-1: a dynamic dimension).</summary>
    public OnnxGraph Input(string name, int elemType, params long[] dims)
    {
        _inputs.Add(ValueInfo(name, TensorType(elemType, dims)));
        return this;
    }

    public OnnxGraph OutputTensor(string name, int elemType, params long[] dims)
    {
        _outputs.Add(ValueInfo(name, TensorType(elemType, dims)));
        return this;
    }

    /// <summary>Output of type seq(map(int64 or string, float)), as ZipMap produces.</summary>
    public OnnxGraph OutputZipMap(string name, int keyType = Int64)
    {
        var mapType = Proto.Message(w =>
        {
            w.Int(1, keyType);                                 // key_type
            w.Bytes(2, TensorType(Float, null));               // value_type
        });
        var seqType = Proto.Message(w => w.Bytes(1, Proto.Message(t => t.Bytes(5, mapType)))); // elem_type: TypeProto{map_type}
        _outputs.Add(ValueInfo(name, Proto.Message(w => w.Bytes(4, seqType))));
        return this;
    }

    public OnnxGraph Initializer(string name, float[] values, params long[] dims)
    {
        _initializers.Add(Proto.Message(w =>
        {
            foreach (var d in dims) w.Int(1, d);
            w.Int(2, Float);
            w.String(8, name);
            var raw = new byte[values.Length * 4];
            Buffer.BlockCopy(values, 0, raw, 0, raw.Length);
            w.Bytes(9, raw);
        }));
        return this;
    }

    public OnnxGraph Node(string opType, string[] inputs, string[] outputs, string domain = "", params OnnxAttribute[] attributes)
    {
        if (domain == "ai.onnx.ml") _usesMl = true;
        _nodes.Add(Proto.Message(w =>
        {
            foreach (var i in inputs) w.String(1, i);
            foreach (var o in outputs) w.String(2, o);
            w.String(3, $"{opType}_{_nodes.Count}");
            w.String(4, opType);
            foreach (var a in attributes) w.Bytes(5, a.Encode());
            if (domain.Length > 0) w.String(7, domain);
        }));
        return this;
    }

    public byte[] ToModel(string producer = "streaminference", string docString = "")
    {
        var graph = Proto.Message(w =>
        {
            foreach (var n in _nodes) w.Bytes(1, n);
            w.String(2, Name);
            foreach (var i in _initializers) w.Bytes(5, i);
            if (docString.Length > 0) w.String(10, docString);
            foreach (var i in _inputs) w.Bytes(11, i);
            foreach (var o in _outputs) w.Bytes(12, o);
        });
        return Proto.Message(w =>
        {
            w.Int(1, 8);                                   // ir_version
            w.String(2, producer);
            w.String(3, "1");
            w.Bytes(7, graph);
            w.Bytes(8, Proto.Message(o => { o.String(1, ""); o.Int(2, 13); }));
            if (_usesMl) w.Bytes(8, Proto.Message(o => { o.String(1, "ai.onnx.ml"); o.Int(2, 1); }));
        });
    }

    private static byte[] ValueInfo(string name, byte[] type) => Proto.Message(w =>
    {
        w.String(1, name);
        w.Bytes(2, type);
    });

    private static byte[] TensorType(int elemType, long[]? dims) => Proto.Message(w =>
        w.Bytes(1, Proto.Message(t =>
        {
            t.Int(1, elemType);
            if (dims is null) return;
            t.Bytes(2, Proto.Message(s =>
            {
                foreach (var d in dims)
                    s.Bytes(1, Proto.Message(dim => { if (d < 0) dim.String(2, "N"); else dim.Int(1, d); }));
            }));
        })));
}

/// <summary>A node attribute (AttributeProto).</summary>
public sealed class OnnxAttribute
{
    private readonly Action<Proto> _write;
    private OnnxAttribute(Action<Proto> write) => _write = write;

    public static OnnxAttribute Floats(string name, float[] values) => new(w =>
    {
        w.String(1, name);
        foreach (var v in values) w.Float(7, v);
        w.Int(20, 6);
    });

    public static OnnxAttribute Ints(string name, long[] values) => new(w =>
    {
        w.String(1, name);
        foreach (var v in values) w.Int(8, v);
        w.Int(20, 7);
    });

    public static OnnxAttribute Float(string name, float value) => new(w =>
    {
        w.String(1, name);
        w.Float(2, value);
        w.Int(20, 1);
    });

    public static OnnxAttribute Int(string name, long value) => new(w =>
    {
        w.String(1, name);
        w.Int(3, value);
        w.Int(20, 2);
    });

    public static OnnxAttribute Texts(string name, string[] values) => new(w =>
    {
        w.String(1, name);
        foreach (var v in values) w.String(9, v);
        w.Int(20, 8);
    });

    public static OnnxAttribute Text(string name, string value) => new(w =>
    {
        w.String(1, name);
        w.String(4, value);
        w.Int(20, 3);
    });

    public byte[] Encode() => Proto.Message(_write);
}

/// <summary>Minimal protobuf encoder: varints, fixed32 floats, length-delimited fields.</summary>
public sealed class Proto
{
    private readonly MemoryStream _out = new();

    public static byte[] Message(Action<Proto> build)
    {
        var p = new Proto();
        build(p);
        return p._out.ToArray();
    }

    public void Int(int field, long value)
    {
        Varint(((ulong)field << 3) | 0);
        Varint((ulong)value);
    }

    public void Float(int field, float value)
    {
        Varint(((ulong)field << 3) | 5);
        Span<byte> b = stackalloc byte[4];
        System.Buffers.Binary.BinaryPrimitives.WriteSingleLittleEndian(b, value);
        _out.Write(b);
    }

    public void String(int field, string value) => Bytes(field, Encoding.UTF8.GetBytes(value));

    public void Bytes(int field, byte[] value)
    {
        Varint(((ulong)field << 3) | 2);
        Varint((ulong)value.Length);
        _out.Write(value);
    }

    private void Varint(ulong v)
    {
        while (v >= 0x80)
        {
            _out.WriteByte((byte)(v | 0x80));
            v >>= 7;
        }
        _out.WriteByte((byte)v);
    }
}
