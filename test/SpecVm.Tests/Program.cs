namespace SpecVm.Tests;

/// <summary>
/// The test assembly's entry point (instead of the test SDK's empty one): <c>child NAME</c> runs one scenario of
/// <see cref="Misuse.ChildProcessTests"/> in this process, for misuse that used to crash the process.
/// </summary>
internal static class Program
{
    public static int Main(string[] args) =>
        args.Length == 2 && args[0] == "child" ? Misuse.ChildProcessTests.RunChild(args[1]) : 0;
}
