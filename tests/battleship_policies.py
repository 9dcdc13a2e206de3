"""An honest Battleship policy (hunt around hits, else a parity sweep), shared by the task tests and the
forged-verdict tests as the policy that must still score."""

HUNT_REASON = '''def reason(observation):
    board, n = observation["board"], observation["size"]
    near = []
    for r in range(n):
        for c in range(n):
            if board[r][c] == "X":
                for a, b in ((r + 1, c), (r - 1, c), (r, c + 1), (r, c - 1)):
                    if 0 <= a < n and 0 <= b < n and board[a][b] == "." and [a, b] not in near:
                        near.append([a, b])
    parity = [[r, c] for r in range(n) for c in range(n) if board[r][c] == "." and (r + c) % 2 == 0]
    return {"targets": near + parity}
'''
HUNT_ACT = 'def act(plan):\n    return plan["targets"][0]\n'
