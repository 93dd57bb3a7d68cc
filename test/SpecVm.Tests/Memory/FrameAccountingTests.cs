using SpecVm.Faults;
using SpecVm.Memory;
using SpecVm.Mm;
using SpecVm.Smp;
using SpecVm.Tests.Smp;
using Xunit.Sdk;

namespace SpecVm.Tests.Memory;

public class FrameAccountingTests
{
    [Fact]
    public void FramesBalanceAfterBothCpusMapTouchAndUnmapAndTheAddressSpaceIsDisposed()
    {
        using Machine m = ShootdownTests.NewMachine();
        var ledger = FrameLedger.Begin(m);
        var mm = new AddressSpace(m, new MmapLockStrategy());
        m.RunOnAll(cpu =>
        {
            for (int round = 0; round < 20; round++)
            {
                ulong a = mm.Map(cpu, 3 << 20, Protection.ReadWrite);
                for (ulong off = 0; off < 3 << 20; off += 8192)
                {
                    mm.Write(cpu, a + off, off);
                }

                mm.Unmap(cpu, a + 4096, 1 << 20);
                if (round % 2 == 0)
                {
                    mm.Unmap(cpu, a, 3 << 20);
                }
            }
        });

        // Some mappings are left for Dispose to tear down.
        Assert.True(m.Memory.Census().Anonymous > 0);
        mm.Dispose();
        ledger.AssertBalanced();
    }

    [Fact]
    public void TheLedgerCatchesALeakedFrame()
    {
        using Machine m = ShootdownTests.NewMachine();
        var ledger = FrameLedger.Begin(m);
        long pfn = m.Frames.Allocate(-1, FrameState.Anonymous);
        Assert.ThrowsAny<XunitException>(ledger.AssertBalanced);
        m.Frames.Free(-1, pfn);
        ledger.AssertBalanced();
    }

    [Fact]
    public void TheLedgerCatchesAFrameLeftAwaitingAFlush()
    {
        using Machine m = ShootdownTests.NewMachine();
        var ledger = FrameLedger.Begin(m);
        long pfn = m.Frames.Allocate(-1, FrameState.AwaitingFlush);
        Assert.ThrowsAny<XunitException>(ledger.AssertBalanced);
        m.Frames.Free(-1, pfn);
        ledger.AssertBalanced();
    }

    [Fact]
    public void TheLedgerCatchesAFrameFreedBehindTheAllocatorsBack()
    {
        using Machine m = ShootdownTests.NewMachine();
        var ledger = FrameLedger.Begin(m);
        long pfn = m.Frames.Allocate(-1, FrameState.Anonymous);
        m.Memory.Frame(pfn).WriteState(FrameState.Free); // Free by state, but never returned to the allocator.
        Assert.ThrowsAny<XunitException>(ledger.AssertBalanced);
        m.Memory.Frame(pfn).WriteState(FrameState.Anonymous);
        m.Frames.Free(-1, pfn);
        ledger.AssertBalanced();
    }

    [Fact]
    public void APfnBeyondTheArenaIsRejected()
    {
        using Machine m = ShootdownTests.NewMachine();
        int frames = m.Memory.FrameCount;
        Assert.Equal("pfn", Assert.Throws<ArgumentOutOfRangeException>(() => m.Memory.Frame(frames)).ParamName);
        Assert.Throws<ArgumentOutOfRangeException>(() => m.Memory.Frame(-1));
        Assert.Throws<ArgumentOutOfRangeException>(() => m.Memory.Frame(long.MaxValue));
        Assert.Throws<ArgumentOutOfRangeException>(() => m.Memory.FrameSpan(frames));
        Assert.Throws<ArgumentOutOfRangeException>(() => m.Frames.Free(0, frames));
        m.Memory.Frame(frames - 1); // The last frame is fine.
    }

    [Fact]
    public void FreeingAFreeFrameOrFrameZeroIsRejected()
    {
        using Machine m = ShootdownTests.NewMachine();
        var ledger = FrameLedger.Begin(m);
        long pfn = m.Frames.Allocate(0, FrameState.Anonymous);
        m.Frames.Free(0, pfn);
        Assert.Throws<InvalidOperationException>(() => m.Frames.Free(0, pfn));
        Assert.Throws<ArgumentOutOfRangeException>(() => m.Frames.Free(0, 0));
        ledger.AssertBalanced();
    }
}
