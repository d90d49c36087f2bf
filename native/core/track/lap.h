// Linear assignment for data association: the minimum-cost matching of rows (tracks) to columns (detections)
// where a pair may only be matched when its cost is below a limit, as upstream's lap.lapjv(extend_cost=True,
// cost_limit=thresh). Exact (shortest augmenting paths with dual potentials, the core of Jonker-Volgenant), not greedy.
#pragma once
#include <utility>
#include <vector>

namespace y26 {

struct Assignment {
  std::vector<std::pair<int, int>> matches;  // (row, col), by row
  std::vector<int> unmatched_rows, unmatched_cols;
};

// Square assignment: cost is n x n, row-major; returns col_of_row (a permutation) minimising the total cost.
std::vector<int> solve_square_assignment(const std::vector<double>& cost, int n);

// cost is rows x cols, row-major. Minimises sum over matches of (cost - limit): every match has cost < limit and
// leaving a row or column unmatched costs limit / 2, so the matching is the best one under the limit, not just
// a thresholded full assignment.
Assignment linear_assignment(const std::vector<double>& cost, int rows, int cols, double limit);

}  // namespace y26
