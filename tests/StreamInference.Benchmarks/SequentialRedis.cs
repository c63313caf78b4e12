using System.Collections.Concurrent;
using System.Reflection;
using StackExchange.Redis;

namespace StreamInference.Benchmarks;

/// <summary>
/// A view of a connection whose <see cref="IDatabase.CreateBatch"/> returns a batch that does not pipeline:
/// on <c>Execute</c> it sends the queued commands one at a time, awaiting each reply before sending the
/// next. Code written for one pipelined round trip (RedisFeatureStore) then issues exactly the same
/// commands with one round trip each — the per-key baseline, without a second copy of its protocol.
/// Everything else is forwarded to the real connection.
/// </summary>
public static class SequentialRedis
{
    /// <param name="connection">The real connection.</param>
    /// <param name="asCluster">Report the servers as Redis Cluster nodes: RedisFeatureStore then sends one
    /// entity (one key's hash tag) per script call, as it must on a cluster — one call per key.</param>
    public static IConnectionMultiplexer Wrap(IConnectionMultiplexer connection, bool asCluster)
    {
        var proxy = DispatchProxy.Create<IConnectionMultiplexer, MultiplexerProxy>();
        ((MultiplexerProxy)(object)proxy).Target = connection;
        ((MultiplexerProxy)(object)proxy).AsCluster = asCluster;
        return proxy;
    }

    /// <summary>Forwards everything; GetDatabase returns a <see cref="DatabaseProxy"/>, GetServers maybe <see cref="ClusterServerProxy"/>s.</summary>
    public class MultiplexerProxy : DispatchProxy
    {
        internal IConnectionMultiplexer Target { get; set; } = null!;
        internal bool AsCluster { get; set; }

        protected override object? Invoke(MethodInfo? targetMethod, object?[]? args)
        {
            var result = Forward(targetMethod!, Target, args);
            if (targetMethod!.Name == nameof(IConnectionMultiplexer.GetDatabase))
            {
                var database = DispatchProxy.Create<IDatabase, DatabaseProxy>();
                ((DatabaseProxy)(object)database).Target = (IDatabase)result!;
                return database;
            }
            if (AsCluster && targetMethod.Name == nameof(IConnectionMultiplexer.GetServers))
            {
                var servers = (IServer[])result!;
                for (var i = 0; i < servers.Length; i++)
                {
                    var server = DispatchProxy.Create<IServer, ClusterServerProxy>();
                    ((ClusterServerProxy)(object)server).Target = servers[i];
                    servers[i] = server;
                }
            }
            return result;
        }
    }

    /// <summary>Forwards everything but <see cref="IServer.ServerType"/>, which is <see cref="ServerType.Cluster"/>.</summary>
    public class ClusterServerProxy : DispatchProxy
    {
        internal IServer Target { get; set; } = null!;

        protected override object? Invoke(MethodInfo? targetMethod, object?[]? args) =>
            targetMethod!.Name == "get_" + nameof(IServer.ServerType) ? ServerType.Cluster : Forward(targetMethod, Target, args);
    }

    /// <summary>Forwards everything; CreateBatch returns a <see cref="SequentialBatch"/>.</summary>
    public class DatabaseProxy : DispatchProxy
    {
        internal IDatabase Target { get; set; } = null!;

        protected override object? Invoke(MethodInfo? targetMethod, object?[]? args)
        {
            if (targetMethod!.Name != nameof(IDatabase.CreateBatch)) return Forward(targetMethod, Target, args);
            var batch = DispatchProxy.Create<IBatch, SequentialBatch>();
            ((SequentialBatch)(object)batch).Target = Target;
            return batch;
        }
    }

    /// <summary>Queues every command; <c>Execute</c> runs them in order, one round trip each.</summary>
    public class SequentialBatch : DispatchProxy
    {
        private static readonly ConcurrentDictionary<Type, MethodInfo> Deferrers = new();
        private static readonly MethodInfo DeferMethod = typeof(SequentialBatch).GetMethod(nameof(Defer), BindingFlags.NonPublic | BindingFlags.Instance)!;
        private readonly List<Func<Task>> _queued = [];

        internal IDatabase Target { get; set; } = null!;

        protected override object? Invoke(MethodInfo? targetMethod, object?[]? args)
        {
            var method = targetMethod!;
            if (method.Name == nameof(IBatch.Execute) && method.GetParameters().Length == 0)
            {
                var queued = _queued.ToArray();
                _queued.Clear();
                _ = RunAsync(queued);
                return null;
            }
            var returns = method.ReturnType;
            if (returns == typeof(Task))
            {
                var completion = new TaskCompletionSource();
                _queued.Add(async () =>
                {
                    try
                    {
                        await ((Task)Forward(method, Target, args)!).ConfigureAwait(false);
                        completion.SetResult();
                    }
                    catch (Exception e)
                    {
                        completion.SetException(e);
                    }
                });
                return completion.Task;
            }
            if (returns.IsGenericType && returns.GetGenericTypeDefinition() == typeof(Task<>))
                return Deferrers.GetOrAdd(returns.GetGenericArguments()[0], t => DeferMethod.MakeGenericMethod(t)).Invoke(this, [method, args]);
            return Forward(method, Target, args);
        }

        private Task<T> Defer<T>(MethodInfo method, object?[]? args)
        {
            var completion = new TaskCompletionSource<T>();
            _queued.Add(async () =>
            {
                try
                {
                    completion.SetResult(await ((Task<T>)Forward(method, Target, args)!).ConfigureAwait(false));
                }
                catch (Exception e)
                {
                    completion.SetException(e);
                }
            });
            return completion.Task;
        }

        private static async Task RunAsync(Func<Task>[] queued)
        {
            foreach (var send in queued) await send().ConfigureAwait(false);
        }
    }

    private static object? Forward(MethodInfo method, object target, object?[]? args)
    {
        try
        {
            return method.Invoke(target, args);
        }
        catch (TargetInvocationException e) when (e.InnerException is not null)
        {
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(e.InnerException);
            throw;
        }
    }
}
