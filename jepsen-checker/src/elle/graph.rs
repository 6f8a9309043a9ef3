//! The transaction dependency graph, Tarjan's SCC algorithm (iterative) and cycle
//! classification.

use std::collections::VecDeque;

/// Write–write dependency: the source's version of a key precedes the target's.
pub const WW: u8 = 1;
/// Write–read dependency: the target read the source's write.
pub const WR: u8 = 2;
/// Read–write anti-dependency: the source read a version the target overwrote.
pub const RW: u8 = 4;
/// Same process, source first.
pub const PROCESS: u8 = 8;
/// Source completed before the target was invoked.
pub const REALTIME: u8 = 16;

const DATA: u8 = WW | WR | RW;

/// Anti-dependency edges tried as the single rw edge of a G-single cycle, per component.
const SINGLE_TRIES_MAX: usize = 10_000;

/// A labelled multigraph over transactions `0..n`.
pub struct Graph {
    n: usize,
    edges: Vec<(u32, u32, u8, u32)>,
}

impl Graph {
    /// An empty graph with `n` nodes.
    pub fn new(n: usize) -> Self {
        Graph { n, edges: Vec::new() }
    }

    /// Adds an edge `a → b` of `kind` about `key` (`u32::MAX`: no key).
    pub fn add(&mut self, a: usize, b: usize, kind: u8, key: u32) {
        debug_assert!(a != b, "self edges carry no information");
        self.edges.push((a as u32, b as u32, kind, key));
    }
}

/// One classified cycle: its kind and its edges `(from, to, kind, key)` in order.
pub struct Cycle {
    /// G0, G1c, G-single, G-nonadjacent or G2-item, with `-process` / `-realtime`.
    pub kind: String,
    /// The edges, each ending where the next starts; the last ends at the first's start.
    pub edges: Vec<(usize, usize, u8, u32)>,
}

type Adj = Vec<Vec<(usize, u8, u32)>>;

/// An edge `(from, to, kind, key)`.
type Edge = (usize, usize, u8, u32);

/// Iterative Tarjan over `adj` restricted to edges whose kind is in `mask`. Returns the
/// component id of every node.
fn tarjan(adj: &Adj, mask: u8) -> Vec<usize> {
    let n = adj.len();
    const UNSEEN: usize = usize::MAX;
    let mut index = vec![UNSEEN; n];
    let mut low = vec![0usize; n];
    let mut on_stack = vec![false; n];
    let mut comp = vec![UNSEEN; n];
    let mut stack: Vec<usize> = Vec::new();
    let mut call: Vec<(usize, usize)> = Vec::new();
    let mut next_index = 0;
    let mut ncomp = 0;
    for root in 0..n {
        if index[root] != UNSEEN {
            continue;
        }
        call.push((root, 0));
        index[root] = next_index;
        low[root] = next_index;
        next_index += 1;
        stack.push(root);
        on_stack[root] = true;
        while let Some(&mut (v, ref mut ei)) = call.last_mut() {
            if let Some(&(w, kind, _)) = adj[v].get(*ei) {
                *ei += 1;
                if kind & mask == 0 {
                    continue;
                }
                if index[w] == UNSEEN {
                    index[w] = next_index;
                    low[w] = next_index;
                    next_index += 1;
                    stack.push(w);
                    on_stack[w] = true;
                    call.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
            } else {
                call.pop();
                if let Some(&(parent, _)) = call.last() {
                    low[parent] = low[parent].min(low[v]);
                }
                if low[v] == index[v] {
                    loop {
                        let w = stack.pop().expect("v is on the stack");
                        on_stack[w] = false;
                        comp[w] = ncomp;
                        if w == v {
                            break;
                        }
                    }
                    ncomp += 1;
                }
            }
        }
    }
    comp
}

/// Shortest path `from → to` using edges in `mask` between nodes with `comp == c`.
fn bfs(adj: &Adj, mask: u8, comp: &[usize], from: usize, to: usize) -> Option<Vec<Edge>> {
    let c = comp[from];
    let mut prev: Vec<Option<(usize, u8, u32)>> = vec![None; adj.len()];
    let mut seen = vec![false; adj.len()];
    let mut q = VecDeque::from([from]);
    seen[from] = true;
    while let Some(v) = q.pop_front() {
        if v == to {
            let mut path = Vec::new();
            let mut x = to;
            while x != from {
                let (p, kind, key) = prev[x].expect("reached nodes have a parent");
                path.push((p, x, kind, key));
                x = p;
            }
            path.reverse();
            return Some(path);
        }
        for &(w, kind, key) in &adj[v] {
            if kind & mask != 0 && comp[w] == c && !seen[w] {
                seen[w] = true;
                prev[w] = Some((v, kind, key));
                q.push_back(w);
            }
        }
    }
    None
}

fn comp_sizes(comp: &[usize]) -> Vec<usize> {
    let mut sizes = vec![0; comp.iter().max().map_or(0, |m| m + 1)];
    for &c in comp {
        sizes[c] += 1;
    }
    sizes
}

/// A cycle through edge `a → b` (in `mask`) closed by a path `b → a` in `path_mask`.
fn close(adj: &Adj, path_mask: u8, comp: &[usize], e: Edge) -> Option<Vec<Edge>> {
    let mut cyc = vec![e];
    cyc.extend(bfs(adj, path_mask, comp, e.1, e.0)?);
    Some(cyc)
}

/// Classifies one cycle in a strongly connected local graph using edges in `extra`
/// besides data edges.
fn classify(adj: &Adj, extra: u8) -> Option<(&'static str, Vec<Edge>)> {
    let edges = || adj.iter().enumerate().flat_map(|(a, es)| es.iter().map(move |&(b, k, key)| (a, b, k, key)));
    // G0: only write-write (plus extra) edges.
    let m = WW | extra;
    let comp = tarjan(adj, m);
    let sizes = comp_sizes(&comp);
    if let Some(e) = edges().find(|&(a, b, k, _)| k & m != 0 && comp[a] == comp[b] && sizes[comp[a]] > 1) {
        return close(adj, m, &comp, e).map(|c| ("G0", c));
    }
    // G1c: write-write and write-read, at least one write-read.
    let m = WW | WR | extra;
    let comp = tarjan(adj, m);
    if let Some(e) = edges().find(|&(a, b, k, _)| k == WR && comp[a] == comp[b]) {
        return close(adj, m, &comp, e).map(|c| ("G1c", c));
    }
    // G-single: exactly one anti-dependency a → b, closed by a path b ⇝ a without any.
    let all = vec![0usize; adj.len()];
    for (tries, e) in edges().filter(|e| e.2 == RW).enumerate() {
        if tries >= SINGLE_TRIES_MAX {
            break;
        }
        if let Some(c) = close(adj, m, &all, e) {
            return Some(("G-single", c));
        }
    }
    // G-nonadjacent: anti-dependencies, never two in a row. Product graph: node 2v is
    // "arrived by a non-rw edge", 2v+1 "arrived by an rw edge"; rw edges only leave 2v.
    let n = adj.len();
    let mut prod: Adj = vec![Vec::new(); 2 * n];
    for (a, b, k, key) in edges() {
        if k == RW {
            prod[2 * a].push((2 * b + 1, k, key));
        } else if k & m != 0 {
            prod[2 * a].push((2 * b, k, key));
            prod[2 * a + 1].push((2 * b, k, key));
        }
    }
    let pcomp = tarjan(&prod, u8::MAX);
    for (a, es) in prod.iter().enumerate() {
        for &(b, k, key) in es {
            if k == RW && pcomp[a] == pcomp[b] {
                let Some(walk) = close(&prod, u8::MAX, &pcomp, (a, b, k, key)) else {
                    continue;
                };
                let cyc = walk.into_iter().map(|(x, y, k, key)| (x / 2, y / 2, k, key)).collect();
                return Some(("G-nonadjacent", cyc));
            }
        }
    }
    // G2-item: any cycle with an anti-dependency.
    let m = DATA | extra;
    let comp = tarjan(adj, m);
    if let Some(e) = edges().find(|&(a, b, k, _)| k == RW && comp[a] == comp[b]) {
        return close(adj, m, &comp, e).map(|c| ("G2-item", c));
    }
    None
}

/// Finds and classifies one cycle per strongly connected component.
pub fn find_cycles(g: &Graph) -> Vec<Cycle> {
    let mut adj: Adj = vec![Vec::new(); g.n];
    for &(a, b, k, key) in &g.edges {
        adj[a as usize].push((b as usize, k, key));
    }
    let comp = tarjan(&adj, u8::MAX);
    let sizes = comp_sizes(&comp);
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); sizes.len()];
    for (v, &c) in comp.iter().enumerate() {
        if sizes[c] > 1 {
            members[c].push(v);
        }
    }
    let mut out = Vec::new();
    let mut local = vec![usize::MAX; g.n];
    for nodes in members.iter().filter(|m| !m.is_empty()) {
        for (i, &v) in nodes.iter().enumerate() {
            local[v] = i;
        }
        let mut ladj: Adj = vec![Vec::new(); nodes.len()];
        for (i, &v) in nodes.iter().enumerate() {
            for &(w, k, key) in &adj[v] {
                if comp[w] == comp[v] {
                    ladj[i].push((local[w], k, key));
                }
            }
        }
        for (extra, suffix) in [(0, ""), (PROCESS, "-process"), (PROCESS | REALTIME, "-realtime")] {
            if let Some((kind, cyc)) = classify(&ladj, extra) {
                out.push(Cycle {
                    kind: format!("{kind}{suffix}"),
                    edges: cyc.into_iter().map(|(a, b, k, key)| (nodes[a], nodes[b], k, key)).collect(),
                });
                break;
            }
        }
    }
    out
}
