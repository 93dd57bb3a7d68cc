namespace SpecVm.Benchmarks;

internal static class Program
{
    private static int Main(string[] args)
    {
        if (args.Length > 0 && args[0] == "bdn")
        {
            return BdnCommand.Run(args[1..]);
        }

        Console.WriteLine($"SpecVm {typeof(SpecVm.Sync.CacheLine).Assembly.GetName().Version}");
        return 0;
    }
}
