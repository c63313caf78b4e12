namespace StreamInference.Core.Tests;

public class PartitionOffsetsTests
{
    [Fact]
    public void Watermark_AdvancesOnlyOverContiguousCompletedRecords_WhenCompletedOutOfOrder()
    {
        var p = new PartitionOffsets("t", 0);
        var s10 = p.Track(10);
        var s11 = p.Track(11);
        var s12 = p.Track(12);

        p.Complete(s12);
        Assert.Equal(-1, p.Committable);      // 10 and 11 unfinished: nothing to commit
        p.Complete(s10);
        Assert.Equal(11, p.Committable);      // 10 done: commit "next is 11"
        p.Complete(s11);
        Assert.Equal(13, p.Committable);      // 11 and the earlier 12 complete the run
        Assert.Equal(0, p.InFlight);
    }

    [Fact]
    public void Watermark_HandlesOffsetGaps_FromCompactionOrTransactionMarkers()
    {
        var p = new PartitionOffsets("t", 3);
        var a = p.Track(100);
        var b = p.Track(105);
        p.Complete(b);
        p.Complete(a);
        Assert.Equal(106, p.Committable);
    }

    [Fact]
    public void Watermark_GrowsBeyondInitialCapacity_AndKeepsOrder()
    {
        var p = new PartitionOffsets("t", 0, initialCapacity: 4);
        var seqs = new long[1000];
        for (var i = 0; i < seqs.Length; i++) seqs[i] = p.Track(i);
        for (var i = seqs.Length - 1; i >= 1; i--) p.Complete(seqs[i]); // everything but the first
        Assert.Equal(-1, p.Committable);
        p.Complete(seqs[0]);
        Assert.Equal(1000, p.Committable);
    }

    [Fact]
    public void TryTakeCommittable_ReportsOnlyChanges()
    {
        var p = new PartitionOffsets("t", 0);
        Assert.False(p.TryTakeCommittable(out _));
        p.Complete(p.Track(0));
        Assert.True(p.TryTakeCommittable(out var first));
        Assert.Equal(1, first);
        Assert.False(p.TryTakeCommittable(out _));
        p.Complete(p.Track(1));
        Assert.True(p.TryTakeCommittable(out var second));
        Assert.Equal(2, second);
    }

    [Fact]
    public void Track_RejectsNonIncreasingOffsets()
    {
        var p = new PartitionOffsets("t", 0);
        p.Track(5);
        Assert.Throws<InvalidOperationException>(() => p.Track(5));
    }

    [Fact]
    public void Complete_AfterRevocation_IsIgnored()
    {
        var p = new PartitionOffsets("t", 0);
        var s = p.Track(1);
        p.MarkRevoked();
        p.Complete(s);
        Assert.Equal(-1, p.Committable);
    }

    [Fact]
    public void Complete_UnknownSequence_Throws()
    {
        var p = new PartitionOffsets("t", 0);
        p.Track(1);
        Assert.Throws<InvalidOperationException>(() => p.Complete(42));
    }
}
